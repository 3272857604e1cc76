;; relay: an actor that is an MCP tool and an MCP client at once. It offers, as its own tools
;; (relay.toml's [[mcp.tool]] tables), tools of the MCP server its grant calls "upstream".
;;
;; World: imports theater:simple/mcp-client (list-tools, call-tool)
;;        exports theater:simple/actor (init), theater:simple/message-server-client (handle-request)
;;
;; `theater mcp` turns a call of its tool NAME into the request {"tool":"NAME","arguments":ARGS}
;; (compact JSON, "tool" first), so NAME starts at byte 9 and ARGS 14 bytes after it, up to the
;; closing brace. handle-request then:
;;   NAME = "tools": list-tools("upstream") -> the names as a JSON array, e.g. ["forecast"]
;;   otherwise:      call-tool("upstream", NAME, ARGS) -> the result's content (a JSON array of
;;                   MCP content blocks); "error: " and the content if the tool failed, or
;;                   "error: " and the reason if the host refused or could not make the call
;; The state is kept as it is. Memory: 16.. "upstream", 32.. "error: ", 48.. "tools";
;; 1024 the export's return area, 1152 the imports'; 4096.. a bump heap reset after each call.
(component $relay
  (type $mcp_t (instance
    (type $tool (record (field "name" string) (field "description" string) (field "input-schema" string)))
    (export "tool" (type $tool_e (eq $tool)))
    (type $res (record (field "content" string) (field "structured" (option string)) (field "is-error" bool)))
    (export "tool-result" (type $res_e (eq $res)))
    (export "list-tools" (func (param "server" string) (result (result (list $tool_e) (error string)))))
    (export "call-tool" (func (param "server" string) (param "tool" string) (param "arguments" string)
                              (result (result $res_e (error string)))))))
  (import "theater:simple/mcp-client" (instance $mcp (type $mcp_t)))

  (core module $libc
    (memory (export "memory") 1)
    (global $bump (export "bump") (mut i32) (i32.const 4096))
    (func (export "realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
      (local $p i32) (local $end i32)
      (local.set $p (i32.and (i32.add (global.get $bump) (i32.sub (local.get $align) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $p) (local.get $size)))
      (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
        (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end) (i32.shl (memory.size) (i32.const 16)))
                                                           (i32.const 16)) (i32.const 1)))
                          (i32.const -1)) (then unreachable))))
      (global.set $bump (local.get $end))
      (if (i32.ne (local.get $old) (i32.const 0))
        (then (memory.copy (local.get $p) (local.get $old)
                (select (local.get $old_size) (local.get $size) (i32.lt_u (local.get $old_size) (local.get $size))))))
      (local.get $p))
    (func (export "post") (param i32)
      (global.set $bump (i32.const 4096))))
  (core instance $libc (instantiate $libc))

  (alias export $mcp "list-tools" (func $list_tools_f))
  (alias export $mcp "call-tool" (func $call_tool_f))
  ;; list-tools: (server p l, retptr); retptr: disc u8 @0, ok: list ptr @4 len @8 (24-byte records:
  ;; name p l, description p l, input-schema p l), err: ptr @4 len @8
  (core func $list_tools (canon lower (func $list_tools_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  ;; call-tool: (server p l, tool p l, arguments p l, retptr); retptr: disc u8 @0, ok: content p @4 l @8,
  ;; structured disc u8 @12 p @16 l @20, is-error u8 @24; err: ptr @4 len @8
  (core func $call_tool (canon lower (func $call_tool_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core instance $mc (export "list-tools" (func $list_tools)) (export "call-tool" (func $call_tool)))

  (core module $m
    (import "libc" "memory" (memory 1))
    (import "libc" "bump" (global $bump (mut i32)))
    (import "mcp" "list-tools" (func $list_tools (param i32 i32 i32)))
    (import "mcp" "call-tool" (func $call_tool (param i32 i32 i32 i32 i32 i32 i32)))
    (data (i32.const 16) "upstream")
    (data (i32.const 32) "error: ")
    (data (i32.const 48) "tools")
    (global $RET i32 (i32.const 1024))
    (global $IRET i32 (i32.const 1152))
    (global $out (mut i32) (i32.const 0))
    (global $olen (mut i32) (i32.const 0))

    ;; the reply, written at the top of the heap once the import has returned
    (func $begin (global.set $out (global.get $bump)) (global.set $olen (i32.const 0)))
    (func $bytes (param $p i32) (param $n i32)
      (local $end i32)
      (local.set $end (i32.add (i32.add (global.get $out) (global.get $olen)) (local.get $n)))
      (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
        (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end) (i32.shl (memory.size) (i32.const 16)))
                                                           (i32.const 16)) (i32.const 1)))
                          (i32.const -1)) (then unreachable))))
      (memory.copy (i32.add (global.get $out) (global.get $olen)) (local.get $p) (local.get $n))
      (global.set $olen (i32.add (global.get $olen) (local.get $n))))
    (func $byte (param $b i32)
      (i32.store8 (i32.const 8) (local.get $b))
      (call $bytes (i32.const 8) (i32.const 1)))
    ;; "error: " and the err string at IRET+4
    (func $error
      (call $bytes (i32.const 32) (i32.const 7))
      (call $bytes (i32.load offset=4 (global.get $IRET)) (i32.load offset=8 (global.get $IRET))))

    (func $list
      (local $p i32) (local $end i32)
      (call $list_tools (i32.const 16) (i32.const 8) (global.get $IRET))
      (call $begin)
      (if (i32.load8_u (global.get $IRET)) (then (call $error) (return)))
      (local.set $p (i32.load offset=4 (global.get $IRET)))
      (local.set $end (i32.add (local.get $p) (i32.mul (i32.load offset=8 (global.get $IRET)) (i32.const 24))))
      (call $byte (i32.const 91))                                   ;; [
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
          (if (i32.ne (local.get $p) (i32.load offset=4 (global.get $IRET))) (then (call $byte (i32.const 44))))
          (call $byte (i32.const 34))
          (call $bytes (i32.load (local.get $p)) (i32.load offset=4 (local.get $p)))
          (call $byte (i32.const 34))
          (local.set $p (i32.add (local.get $p) (i32.const 24)))
          (br $next)))
      (call $byte (i32.const 93)))                                  ;; ]

    (func $call (param $tp i32) (param $tl i32) (param $ap i32) (param $al i32)
      (call $call_tool (i32.const 16) (i32.const 8) (local.get $tp) (local.get $tl) (local.get $ap) (local.get $al)
                       (global.get $IRET))
      (call $begin)
      (if (i32.load8_u (global.get $IRET)) (then (call $error) (return)))
      (if (i32.load8_u offset=24 (global.get $IRET)) (then (call $bytes (i32.const 32) (i32.const 7))))
      (call $bytes (i32.load offset=4 (global.get $IRET)) (i32.load offset=8 (global.get $IRET))))

    (func $dispatch (param $mp i32) (param $ml i32)
      (local $tl i32) (local $ap i32)
      ;; NAME: from byte 9 to the next quote
      (block $found
        (loop $scan
          (br_if $found (i32.ge_u (i32.add (i32.const 9) (local.get $tl)) (local.get $ml)))
          (br_if $found (i32.eq (i32.load8_u (i32.add (local.get $mp) (i32.add (i32.const 9) (local.get $tl))))
                                (i32.const 34)))
          (local.set $tl (i32.add (local.get $tl) (i32.const 1)))
          (br $scan)))
      (if (i32.and (i32.eq (local.get $tl) (i32.const 5))
                   (i32.eq (i32.load (i32.add (local.get $mp) (i32.const 9))) (i32.load (i32.const 48))))
        (then (if (i32.eq (i32.load8_u offset=13 (local.get $mp)) (i32.load8_u (i32.const 52)))
                (then (call $list) (return)))))
      (local.set $ap (i32.add (i32.const 23) (local.get $tl)))
      (if (i32.gt_u (i32.add (local.get $ap) (i32.const 1)) (local.get $ml))
        (then (local.set $ap (local.get $ml)) (local.set $ml (i32.add (local.get $ml) (i32.const 1)))))
      (call $call (i32.add (local.get $mp) (i32.const 9)) (local.get $tl)
                  (i32.add (local.get $mp) (local.get $ap)) (i32.sub (i32.sub (local.get $ml) (i32.const 1)) (local.get $ap))))

    (func (export "init") (param $sd i32) (param $sp i32) (param $sl i32) (param $idp i32) (param $idl i32) (result i32)
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (local.get $sd))
      (i32.store offset=8 (global.get $RET) (local.get $sp))
      (i32.store offset=12 (global.get $RET) (local.get $sl))
      (global.get $RET))
    (func (export "handle-request") (param $sd i32) (param $sp i32) (param $sl i32)
                                    (param $rp i32) (param $rl i32) (param $mp i32) (param $ml i32) (result i32)
      (call $dispatch (local.get $mp) (local.get $ml))
      (global.set $bump (i32.add (global.get $out) (global.get $olen)))
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (local.get $sd))
      (i32.store offset=8 (global.get $RET) (local.get $sp))
      (i32.store offset=12 (global.get $RET) (local.get $sl))
      (i32.store8 offset=16 (global.get $RET) (i32.const 1))
      (i32.store offset=20 (global.get $RET) (global.get $out))
      (i32.store offset=24 (global.get $RET) (global.get $olen))
      (global.get $RET)))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "mcp" (instance $mc))))

  (func $init (param "state" (option (list u8))) (param "params" (tuple string))
    (result (result (tuple (option (list u8))) (error string)))
    (canon lift (core func $i "init") (memory (core memory $libc "memory"))
      (realloc (core func $libc "realloc")) (post-return (core func $libc "post"))))
  (instance $actor (export "init" (func $init)))
  (export "theater:simple/actor" (instance $actor))
  (func $handle_request (param "state" (option (list u8))) (param "params" (tuple string (list u8)))
    (result (result (tuple (option (list u8)) (tuple (option (list u8)))) (error string)))
    (canon lift (core func $i "handle-request") (memory (core memory $libc "memory"))
      (realloc (core func $libc "realloc")) (post-return (core func $libc "post"))))
  (instance $client (export "handle-request" (func $handle_request)))
  (export "theater:simple/message-server-client" (instance $client)))
