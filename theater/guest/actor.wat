;; __NAME__: a Theater actor in component WAT (written by `theater new --lang wat`).
;;
;; World (wit/world.wit lists everything the manifest grants; this file imports only what it
;; calls, which is allowed): imports theater:simple/runtime (log)
;;        exports theater:simple/actor (init)
;;                theater:simple/message-server-client (every function)
;;
;; init logs "__NAME__ started" and keeps the state; handle-request replies with the message it
;; got (an echo); handle-send, handle-channel-message and handle-channel-close keep the state;
;; handle-channel-open refuses the channel. Edit the core module's functions below; to call
;; another host function, add it to an imported instance type, lower it with `canon lower`
;; and import it into the core module (examples/ and tests/actors/ show each interface).
;;
;; ABI reminders (the canonical ABI, 32-bit): an export's core function gets the state as
;; (disc, ptr, len) then its params flattened, and returns a pointer to its result:
;;   result<tuple<option<list<u8>>, ...>, string>: disc u8 @0 (0 ok, 1 err); ok: state disc u8 @4,
;;   ptr @8, len @12, then the next tuple member from @16; err: message ptr @4, len @8.
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
    ;; post-return for every lifted export: frees everything allocated during the call
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
    (data (i32.const 16) "__NAME__ started")

    ;; keep(state-disc, state-ptr, state-len) -> RET = ok((state)), reply slot none
    (func $keep (param $sd i32) (param $sp i32) (param $sl i32) (result i32)
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (local.get $sd))
      (i32.store offset=8 (global.get $RET) (local.get $sp))
      (i32.store offset=12 (global.get $RET) (local.get $sl))
      (i32.store8 offset=16 (global.get $RET) (i32.const 0))
      (global.get $RET))

    ;; init: func(state, params: tuple<string>) -> result<tuple<option<list<u8>>>, string>
    (func (export "init") (param $sd i32) (param $sp i32) (param $sl i32) (param $idp i32) (param $idl i32) (result i32)
      (call $log (i32.const 16) (i32.const __LOGLEN__))
      (call $keep (local.get $sd) (local.get $sp) (local.get $sl)))

    ;; handle-send: func(state, params: tuple<list<u8>>) -> result<tuple<option<list<u8>>>, string>
    (func (export "handle-send") (param $sd i32) (param $sp i32) (param $sl i32) (param $mp i32) (param $ml i32) (result i32)
      (call $keep (local.get $sd) (local.get $sp) (local.get $sl)))

    ;; handle-request: func(state, params: tuple<string, list<u8>>)
    ;;                 -> result<tuple<option<list<u8>>, tuple<option<list<u8>>>>, string>
    ;; the reply (option<list<u8>>) is at RET+16: disc u8 @16, ptr @20, len @24
    (func (export "handle-request") (param $sd i32) (param $sp i32) (param $sl i32)
                                    (param $rp i32) (param $rl i32) (param $mp i32) (param $ml i32) (result i32)
      (drop (call $keep (local.get $sd) (local.get $sp) (local.get $sl)))
      (i32.store8 offset=16 (global.get $RET) (i32.const 1))
      (i32.store offset=20 (global.get $RET) (local.get $mp))
      (i32.store offset=24 (global.get $RET) (local.get $ml))
      (global.get $RET))

    ;; handle-channel-open: func(state, params: tuple<string, list<u8>>)
    ;;                      -> result<tuple<option<list<u8>>, tuple<channel-accept>>, string>
    ;; channel-accept { accepted: bool @16, message: option<list<u8>> @20 (disc), @24 ptr, @28 len }
    (func (export "handle-channel-open") (param $sd i32) (param $sp i32) (param $sl i32)
                                         (param $cp i32) (param $cl i32) (param $mp i32) (param $ml i32) (result i32)
      (drop (call $keep (local.get $sd) (local.get $sp) (local.get $sl)))
      (i32.store8 offset=16 (global.get $RET) (i32.const 0))       ;; not accepted
      (i32.store8 offset=20 (global.get $RET) (i32.const 0))       ;; no message
      (global.get $RET))

    ;; handle-channel-message: func(state, params: tuple<channel-id, list<u8>>) -> result<tuple<option<list<u8>>>, string>
    (func (export "handle-channel-message") (param $sd i32) (param $sp i32) (param $sl i32)
                                            (param $cp i32) (param $cl i32) (param $mp i32) (param $ml i32) (result i32)
      (call $keep (local.get $sd) (local.get $sp) (local.get $sl)))

    ;; handle-channel-close: func(state, params: tuple<channel-id>) -> result<tuple<option<list<u8>>>, string>
    (func (export "handle-channel-close") (param $sd i32) (param $sp i32) (param $sl i32)
                                          (param $cp i32) (param $cl i32) (result i32)
      (call $keep (local.get $sd) (local.get $sp) (local.get $sl))))
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
  ;; record channel-accept { accepted: bool, message: option<list<u8>> }
  (type $channel_accept (record (field "accepted" bool) (field "message" (option (list u8)))))
  (func $handle_channel_open (param "state" (option (list u8))) (param "params" (tuple string (list u8)))
    (result (result (tuple (option (list u8)) (tuple $channel_accept)) (error string)))
    (canon lift (core func $i "handle-channel-open") (memory (core memory $libc "memory"))
      (realloc (core func $libc "realloc")) (post-return (core func $libc "post"))))
  (func $handle_channel_message (param "state" (option (list u8))) (param "params" (tuple string (list u8)))
    (result (result (tuple (option (list u8))) (error string)))
    (canon lift (core func $i "handle-channel-message") (memory (core memory $libc "memory"))
      (realloc (core func $libc "realloc")) (post-return (core func $libc "post"))))
  (func $handle_channel_close (param "state" (option (list u8))) (param "params" (tuple string))
    (result (result (tuple (option (list u8))) (error string)))
    (canon lift (core func $i "handle-channel-close") (memory (core memory $libc "memory"))
      (realloc (core func $libc "realloc")) (post-return (core func $libc "post"))))
  (instance $client
    (export "channel-accept" (type $channel_accept))
    (export "handle-send" (func $handle_send))
    (export "handle-request" (func $handle_request))
    (export "handle-channel-open" (func $handle_channel_open))
    (export "handle-channel-message" (func $handle_channel_message))
    (export "handle-channel-close" (func $handle_channel_close)))
  (export "theater:simple/message-server-client" (instance $client)))
