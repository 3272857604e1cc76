"""``theater completion bash|zsh|fish``: a shell completion script, made from the parser itself.

The script is static (commands, sub-commands and each one's options, read from argparse),
so a tab costs no Python start-up and never reaches the server; values are completed as
file names. zsh runs the bash script through its ``bashcompinit`` layer.
"""

from __future__ import annotations

import argparse

from . import _output
from ._context import Context

# "cmd" or "group sub" -> (its options, those that take a value (so the next word is not a
# command), and the words that may come next: sub-commands, or a positional's choices)
Tree = dict[str, tuple[list[str], list[str], list[str]]]


def _tree(parser: argparse.ArgumentParser) -> Tree:
    """Every command path with its options and next words, read from the parser."""
    tree: Tree = {}

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        opts, valued, words = [], [], []
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                words += list(a.choices)
                for name, sp in a.choices.items():
                    walk(sp, f"{path} {name}".strip())
            elif a.option_strings and a.help != argparse.SUPPRESS:
                opts += a.option_strings
                if a.nargs != 0:
                    valued += a.option_strings
            elif not a.option_strings and a.choices:
                words += [str(c) for c in a.choices]
        tree[path] = (opts, valued, words)
    walk(parser, "")
    return tree


def bash(tree: Tree) -> str:
    valued = sorted({o for _, v, _ in tree.values() for o in v})
    groups = [path for path, (_, _, words) in tree.items() if path and words and path + " " + words[0] in tree]
    opts = "\n".join(f'    "{path}") echo "{" ".join(o)}";;' for path, (o, _, _) in tree.items())
    words = "\n".join(f'    "{path}") echo "{" ".join(w)}";;' for path, (_, _, w) in tree.items() if w)
    return f"""# theater completion for bash: source <(theater completion bash)
_theater_opts() {{
  case "$1" in
{opts}
  esac
}}
_theater_words() {{
  case "$1" in
{words}
  esac
}}
_theater() {{
  local cur=${{COMP_WORDS[COMP_CWORD]}} prev=${{COMP_WORDS[COMP_CWORD-1]}} path="" w i skip=0
  local valued=" {" ".join(valued)} " groups=" {" ".join(groups)} "
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=${{COMP_WORDS[i]}}
    if ((skip)); then skip=0; continue; fi
    if [[ $valued == *" $w "* ]]; then skip=1; continue; fi
    [[ $w == -* ]] && continue
    if [[ -z $path ]]; then path=$w; elif [[ $groups == *" $path "* ]]; then path="$path $w"; else break; fi
  done
  if [[ $valued == *" $prev "* ]]; then COMPREPLY=($(compgen -f -- "$cur")); return 0; fi
  if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "$(_theater_opts "$path")" -- "$cur"))
  elif [[ -n $(_theater_words "$path") ]]; then COMPREPLY=($(compgen -W "$(_theater_words "$path")" -- "$cur"))
  else COMPREPLY=($(compgen -f -- "$cur")); fi
  return 0
}}
complete -o filenames -F _theater theater
"""


def zsh(tree: Tree) -> str:
    return ("# theater completion for zsh: source <(theater completion zsh)  (after compinit)\n"
            "autoload -U +X bashcompinit && bashcompinit\n" + bash(tree))


def fish(tree: Tree) -> str:
    def q(text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    out = ["# theater completion for fish: theater completion fish | source"]
    for path, (opts, valued, words) in tree.items():
        last = path.split()[-1] if path else ""
        if not path:
            cond = "__fish_use_subcommand"
        elif words and path + " " + words[0] in tree:         # a group: until one of its sub-commands
            cond = f"__fish_seen_subcommand_from {last}; and not __fish_seen_subcommand_from {' '.join(words)}"
        else:
            cond = f"__fish_seen_subcommand_from {last}"
        if words:
            out.append(f"complete -c theater -n {q(cond)} -f -a {q(' '.join(words))}")
        for o in opts:
            flag = f"-l {o[2:]}" if o.startswith("--") else f"-s {o[1:]}"
            out.append(f"complete -c theater -n {q(cond)} {flag}{' -r -F' if o in valued else ''}")
    return "\n".join(out) + "\n"


SHELLS = {"bash": bash, "zsh": zsh, "fish": fish}


def completion(args: argparse.Namespace, ctx: Context) -> int:
    """Print a completion script for your shell: commands, sub-commands and options.

      bash:  source <(theater completion bash)     (or save it as
             ~/.local/share/bash-completion/completions/theater)
      zsh:   source <(theater completion zsh)      (in ~/.zshrc, after compinit)
      fish:  theater completion fish > ~/.config/fish/completions/theater.fish
    """
    _output.emit_bytes(SHELLS[args.shell](_tree(args.parser)).encode())
    return 0


def _completion_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("shell", choices=sorted(SHELLS), help="the shell to complete for")


COMMANDS = {"completion": (completion, "print a shell completion script (bash, zsh, fish)", _completion_args)}
