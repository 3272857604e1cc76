/* A WASI actor in C: wasi-libc, wrapped into a component by the WASI preview1 adapter.
 *
 * World theater:simple/minimal: imports runtime (log), exports actor (init). On init it
 * reads the wall and monotonic clocks, draws 8 random bytes, reads its environment (every
 * variable, listed as NAME=VALUE; in a row), prints one line to stdout and
 * one to stderr, logs "wasi-c started" and returns the stdout line as its state.
 * For the replay tests, a state that holds "loop-next" is answered with the state "loop",
 * and an init given the state "loop" (a restart resumes from it) spins until its call
 * timeout stops it.
 * The canonical-ABI glue is written by hand (no wit-bindgen here); the layouts are noted
 * beside each function. Built by tests/toolchains.py.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* runtime.log: func(msg: string) -> core (ptr, len) */
__attribute__((import_module("theater:simple/runtime"), import_name("log")))
extern void runtime_log(const char *ptr, size_t len);

/* The host allocates the export's arguments (and we our results) through this. */
__attribute__((export_name("cabi_realloc")))
void *cabi_realloc(void *old, size_t old_size, size_t align, size_t new_size) {
    (void)old_size;
    (void)align;                /* malloc's 16-byte alignment covers every canonical type */
    return realloc(old, new_size);
}

/* init: func(state: option<list<u8>>, params: tuple<string>)
 *         -> result<tuple<option<list<u8>>>, string>
 * Flat arguments: (state is-some, state ptr, state len, id ptr, id len). The result does
 * not fit one flat value, so it goes to a return area:
 *   +0 u8 result tag (0 = ok)   +4 u8 option tag (1 = some)   +8 ptr   +12 len
 */
static uint32_t ret_area[4];

static int contains(const uint8_t *buf, size_t len, const char *needle) {
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++)
        if (memcmp(buf + i, needle, n) == 0)
            return 1;
    return 0;
}

__attribute__((export_name("theater:simple/actor#init")))
uint32_t *actor_init(int32_t has_state, uint8_t *state, size_t state_len, char *id, size_t id_len) {
    struct timespec wall, mono;
    unsigned char rnd[8];
    char line[1024], vars[512] = "";
    int n_env = 0;

    if (has_state && state_len == 4 && memcmp(state, "loop", 4) == 0) {
        volatile int spin = 1;
        while (spin) {
        }
    }
    int loop_next = has_state && contains(state, state_len, "loop-next");
    if (has_state)
        free(state);            /* arguments are ours to free */
    clock_gettime(CLOCK_REALTIME, &wall);
    clock_gettime(CLOCK_MONOTONIC, &mono);
    if (getentropy(rnd, sizeof rnd) != 0)
        memset(rnd, 0, sizeof rnd);
    for (char **e = environ; e && *e; e++) {
        n_env++;
        strncat(vars, *e, sizeof vars - strlen(vars) - 2);
        strcat(vars, ";");
    }
    const char *greeting = getenv("GREETING");

    int len = snprintf(line, sizeof line,
                       "init %.*s: wall=%lld mono=%lld random=%02x%02x%02x%02x%02x%02x%02x%02x env=%d "
                       "vars=%s greeting=%s\n",
                       (int)id_len, id, (long long)wall.tv_sec, (long long)mono.tv_nsec + mono.tv_sec * 1000000000LL,
                       rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], n_env, vars,
                       greeting ? greeting : "-");
    if (len >= (int)sizeof line)
        len = sizeof line - 1;
    free(id);
    fputs(line, stdout);
    fflush(stdout);
    fputs("wasi-c says hello on stderr\n", stderr);
    runtime_log("wasi-c started", strlen("wasi-c started"));

    if (loop_next)
        len = snprintf(line, sizeof line, "loop");
    char *out = malloc(len);
    memcpy(out, line, len);
    ret_area[0] = 0;
    ret_area[1] = 1;
    ret_area[2] = (uint32_t)(uintptr_t)out;
    ret_area[3] = (uint32_t)len;
    return ret_area;
}

/* Called after the host has copied the result out. */
__attribute__((export_name("cabi_post_theater:simple/actor#init")))
void actor_init_post(uint32_t *ret) {
    free((void *)(uintptr_t)ret[2]);
}
