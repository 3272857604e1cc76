;; pong: answers every request with "pong".
;;
;; World: imports theater:simple/runtime (log)
;;        exports theater:simple/actor (init)
;;                theater:simple/message-server-client (handle-send, handle-request)
;;
;; init logs "pong ready"; handle-request logs "pong got request" and replies
;; "pong"; handle-send logs "pong got a message". The state is never changed.
;;
;; Memory map:
;;   16..1023    static strings
;;   1024..1055  return area of the lifted exports (RET)
;;   4096..      bump heap (realloc); reset to 4096 by the post-return of every export
(component
  ;; --- imports -------------------------------------------------------------
  (type $runtime_t (instance
    ;; log: func(msg: string)
    (export "log" (func (param "msg" string)))))
  (import "theater:simple/runtime" (instance $runtime (type $runtime_t)))

  ;; --- libc: memory, bump allocator, post-return reset ----------------------
  (core module $libc
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 4096))
    ;; realloc(old-ptr, old-size, align, new-size) -> ptr; grows memory as needed
    (func (export "realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
      (local $p i32) (local $end i64) (local $have i64)
      (local.set $p (i32.and (i32.add (global.get $bump) (i32.sub (local.get $align) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i64.add (i64.extend_i32_u (local.get $p)) (i64.extend_i32_u (local.get $size))))
      (local.set $have (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
      (if (i64.gt_u (local.get $end) (local.get $have))
        (then
          (if (i32.eq (memory.grow (i32.wrap_i64 (i64.shr_u (i64.add (i64.sub (local.get $end) (local.get $have))
                                                                     (i64.const 65535))
                                                             (i64.const 16))))
                      (i32.const -1))
            (then unreachable))))
      (global.set $bump (i32.wrap_i64 (local.get $end)))
      (if (i32.ne (local.get $old) (i32.const 0))
        (then (memory.copy (local.get $p) (local.get $old)
                (select (local.get $old_size) (local.get $size) (i32.lt_u (local.get $old_size) (local.get $size))))))
      (local.get $p))
    ;; post-return for every lifted export: takes the core result (the return-area pointer)
    ;; and frees everything allocated during the call.
    (func (export "post") (param i32)
      (global.set $bump (i32.const 4096))))
  (core instance $libc (instantiate $libc))

  ;; --- lowered imports -------------------------------------------------------
  (alias export $runtime "log" (func $log_f))
  ;; core: (msg-ptr, msg-len) -> ()
  (core func $log (canon lower (func $log_f) (memory (core memory $libc "memory"))))
  (core instance $rt (export "log" (func $log)))

  ;; --- the actor -------------------------------------------------------------
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "rt" "log" (func $log (param i32 i32)))

    (global $RET i32 (i32.const 1024))
    (data (i32.const 16) "pong ready")           ;; 10 bytes
    (data (i32.const 32) "pong got request")     ;; 16 bytes
    (data (i32.const 64) "pong got a message")   ;; 18 bytes
    (data (i32.const 96) "pong")                 ;; 4 bytes

    ;; ok_state(state-disc, state-ptr, state-len) -> RET after writing ok((state))
    (func $ok_state (param $sd i32) (param $sp i32) (param $sl i32) (result i32)
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (local.get $sd))
      (i32.store offset=8 (global.get $RET) (local.get $sp))
      (i32.store offset=12 (global.get $RET) (local.get $sl))
      (global.get $RET))

    ;; init: func(state: option<list<u8>>, params: tuple<string>) -> result<tuple<option<list<u8>>>, string>
    ;; core params: state-disc, state-ptr, state-len, id-ptr, id-len
    ;; returns RET: disc u8 @0 (0 = ok); ok: state disc u8 @4, ptr @8, len @12
    (func (export "init") (param $sd i32) (param $sp i32) (param $sl i32) (param $idp i32) (param $idl i32) (result i32)
      (call $log (i32.const 16) (i32.const 10))
      (call $ok_state (local.get $sd) (local.get $sp) (local.get $sl)))

    ;; handle-send: func(state: option<list<u8>>, params: tuple<list<u8>>) -> result<tuple<option<list<u8>>>, string>
    ;; core params: state-disc, state-ptr, state-len, msg-ptr, msg-len
    ;; returns RET: disc u8 @0; ok: state disc u8 @4, ptr @8, len @12
    (func (export "handle-send") (param $sd i32) (param $sp i32) (param $sl i32) (param $mp i32) (param $ml i32) (result i32)
      (call $log (i32.const 64) (i32.const 18))
      (call $ok_state (local.get $sd) (local.get $sp) (local.get $sl)))

    ;; handle-request: func(state: option<list<u8>>, params: tuple<string, list<u8>>)
    ;;                 -> result<tuple<option<list<u8>>, tuple<option<list<u8>>>>, string>
    ;; core params: state-disc, state-ptr, state-len, request-id-ptr, request-id-len, msg-ptr, msg-len
    ;; returns RET: disc u8 @0; ok: state disc u8 @4, ptr @8, len @12; reply disc u8 @16, ptr @20, len @24
    (func (export "handle-request") (param $sd i32) (param $sp i32) (param $sl i32)
                                    (param $rp i32) (param $rl i32) (param $mp i32) (param $ml i32) (result i32)
      (call $log (i32.const 32) (i32.const 16))
      (i32.store8 offset=16 (global.get $RET) (i32.const 1))
      (i32.store offset=20 (global.get $RET) (i32.const 96))
      (i32.store offset=24 (global.get $RET) (i32.const 4))
      (call $ok_state (local.get $sd) (local.get $sp) (local.get $sl))))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "rt" (instance $rt))))

  ;; --- exports ---------------------------------------------------------------
  (func $init (param "state" (option (list u8))) (param "params" (tuple string))
    (result (result (tuple (option (list u8))) (error string)))
    (canon lift (core func $i "init") (memory (core memory $libc "memory"))
      (realloc (core func $libc "realloc")) (post-return (core func $libc "post"))))
  (instance $actor (export "init" (func $init)))
  (export "theater:simple/actor" (instance $actor))

  (func $handle_send (param "state" (option (list u8))) (param "params" (tuple (list u8)))
    (result (result (tuple (option (list u8))) (error string)))
    (canon lift (core func $i "handle-send") (memory (core memory $libc "memory"))
      (realloc (core func $libc "realloc")) (post-return (core func $libc "post"))))
  (func $handle_request (param "state" (option (list u8))) (param "params" (tuple string (list u8)))
    (result (result (tuple (option (list u8)) (tuple (option (list u8)))) (error string)))
    (canon lift (core func $i "handle-request") (memory (core memory $libc "memory"))
      (realloc (core func $libc "realloc")) (post-return (core func $libc "post"))))
  (instance $client
    (export "handle-send" (func $handle_send))
    (export "handle-request" (func $handle_request)))
  (export "theater:simple/message-server-client" (instance $client)))
