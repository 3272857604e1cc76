;; tools: a test actor that offers MCP tools (tools.toml declares them) and answers their calls.
;;
;; World: exports theater:simple/actor (init), theater:simple/message-server-client (handle-request)
;;
;; A call of one of its tools arrives as the request {"tool":"NAME","arguments":{...}} (compact
;; JSON, "tool" first: theater.mcptools.request_message), so NAME starts at byte 9. By NAME's
;; first letter: e (echo) replies the request's bytes; r (refuse) returns err("refused by the
;; actor"); t (trap) traps; anything else replies "unknown". init and handle-request keep the state.
(component $tools
  (core module $libc
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 4096))
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

  (core module $m
    (import "libc" "memory" (memory 1))
    (data (i32.const 16) "unknown")
    (data (i32.const 32) "refused by the actor")
    (global $RET i32 (i32.const 1024))
    ;; init: ok((state))
    (func (export "init") (param $sd i32) (param $sp i32) (param $sl i32) (param $idp i32) (param $idl i32) (result i32)
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (local.get $sd))
      (i32.store offset=8 (global.get $RET) (local.get $sp))
      (i32.store offset=12 (global.get $RET) (local.get $sl))
      (global.get $RET))
    ;; handle-request(state, (rid, msg)) -> result<(state, (option<bytes>)), string>
    (func (export "handle-request") (param $sd i32) (param $sp i32) (param $sl i32)
                                    (param $rp i32) (param $rl i32) (param $mp i32) (param $ml i32) (result i32)
      (local $op i32)
      (local.set $op (if (result i32) (i32.gt_u (local.get $ml) (i32.const 9))
                       (then (i32.load8_u offset=9 (local.get $mp))) (else (i32.const 0))))
      (if (i32.eq (local.get $op) (i32.const 116)) (then unreachable))         ;; t
      (if (i32.eq (local.get $op) (i32.const 114))                            ;; r: err
        (then (i32.store8 (global.get $RET) (i32.const 1))
              (i32.store offset=4 (global.get $RET) (i32.const 32))
              (i32.store offset=8 (global.get $RET) (i32.const 20))
              (return (global.get $RET))))
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (local.get $sd))
      (i32.store offset=8 (global.get $RET) (local.get $sp))
      (i32.store offset=12 (global.get $RET) (local.get $sl))
      (i32.store8 offset=16 (global.get $RET) (i32.const 1))
      (if (i32.eq (local.get $op) (i32.const 101))                            ;; e: echo
        (then (i32.store offset=20 (global.get $RET) (local.get $mp))
              (i32.store offset=24 (global.get $RET) (local.get $ml)))
        (else (i32.store offset=20 (global.get $RET) (i32.const 16))
              (i32.store offset=24 (global.get $RET) (i32.const 7))))
      (global.get $RET)))
  (core instance $i (instantiate $m (with "libc" (instance $libc))))

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
