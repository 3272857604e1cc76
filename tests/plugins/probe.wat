;; probe: answers each request with what the test-only host function `test:probe/probe.run` makes of it
;; (it runs the request as Python inside the worker: tests/plugins/probe.py).
;;
;; World: imports test:probe/probe (run: func(msg: list<u8>) -> list<u8>)
;;        exports theater:simple/actor (init)
;;                theater:simple/message-server-client (handle-request)
;; The state is kept as it is.
(component
  (type $probe_t (instance
    (export "run" (func (param "msg" (list u8)) (result (list u8))))))
  (import "test:probe/probe" (instance $probe (type $probe_t)))

  (core module $libc
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 4096))
    (func (export "realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
      (local $p i32)
      (local.set $p (i32.and (i32.add (global.get $bump) (i32.sub (local.get $align) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get $align))))
      (global.set $bump (i32.add (local.get $p) (local.get $size)))
      (if (i32.gt_u (global.get $bump) (i32.shl (memory.size) (i32.const 16)))
        (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (local.get $size) (i32.const 16)) (i32.const 1)))
                          (i32.const -1)) (then unreachable))))
      (local.get $p))
    (func (export "post") (param i32)
      (global.set $bump (i32.const 4096))))
  (core instance $libc (instantiate $libc))

  (alias export $probe "run" (func $run_f))
  ;; core: (msg-ptr, msg-len, ret-ptr) -> (); the host writes (ptr, len) at ret-ptr
  (core func $run (canon lower (func $run_f) (memory (core memory $libc "memory"))
    (realloc (core func $libc "realloc"))))
  (core instance $pc (export "run" (func $run)))

  (core module $m
    (import "libc" "memory" (memory 1))
    (import "probe" "run" (func $run (param i32 i32 i32)))
    (global $RET i32 (i32.const 1024))
    (global $TMP i32 (i32.const 1056))
    ;; init: keeps the state
    (func (export "init") (param $sd i32) (param $sp i32) (param $sl i32) (param $idp i32) (param $idl i32) (result i32)
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (local.get $sd))
      (i32.store offset=8 (global.get $RET) (local.get $sp))
      (i32.store offset=12 (global.get $RET) (local.get $sl))
      (global.get $RET))
    ;; handle-request: reply = run(msg), state kept
    (func (export "handle-request") (param $sd i32) (param $sp i32) (param $sl i32)
                                    (param $rp i32) (param $rl i32) (param $mp i32) (param $ml i32) (result i32)
      (call $run (local.get $mp) (local.get $ml) (global.get $TMP))
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (local.get $sd))
      (i32.store offset=8 (global.get $RET) (local.get $sp))
      (i32.store offset=12 (global.get $RET) (local.get $sl))
      (i32.store8 offset=16 (global.get $RET) (i32.const 1))
      (i32.store offset=20 (global.get $RET) (i32.load (global.get $TMP)))
      (i32.store offset=24 (global.get $RET) (i32.load offset=4 (global.get $TMP)))
      (global.get $RET)))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "probe" (instance $pc))))

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
