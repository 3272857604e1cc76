;; opener: opens a channel to the actor named in a request and talks on it.
;;
;; World: imports theater:simple/runtime (log)
;;                theater:simple/message-server-host (open-channel, send-on-channel, close-channel)
;;        exports theater:simple/actor (init)
;;                theater:simple/message-server-client
;;                  (handle-request, handle-channel-message, handle-channel-close)
;;
;; init logs "opener ready". handle-request(rid, target): open-channel(target, "hello");
;; on ok sends "one" on the channel, stores the channel id as its state and replies
;; with the channel id; on err replies "error: <err>" and keeps its state.
;; handle-channel-message logs "opener got: <msg>" and closes the channel.
;; handle-channel-close logs "opener: channel closed".
;;
;; Memory map:
;;   16..1023    static strings
;;   1024..1055  return area of the lifted exports (RET)
;;   1152..1167  return area for open-channel (IRET); 1168..1183 for send/close (IRET2)
;;   4096..      bump heap (realloc); reset to 4096 by the post-return of every export
(component
  ;; --- imports -------------------------------------------------------------
  (type $runtime_t (instance
    ;; log: func(msg: string)
    (export "log" (func (param "msg" string)))))
  (import "theater:simple/runtime" (instance $runtime (type $runtime_t)))
  (type $msh_t (instance
    ;; open-channel: func(actor-id: actor-id, initial-msg: list<u8>) -> result<channel-id, string>
    (export "open-channel" (func (param "actor-id" string) (param "initial-msg" (list u8))
                                 (result (result string (error string)))))
    ;; send-on-channel: func(channel-id: channel-id, msg: list<u8>) -> result<_, string>
    (export "send-on-channel" (func (param "channel-id" string) (param "msg" (list u8))
                                    (result (result (error string)))))
    ;; close-channel: func(channel-id: channel-id) -> result<_, string>
    (export "close-channel" (func (param "channel-id" string) (result (result (error string)))))))
  (import "theater:simple/message-server-host" (instance $msh (type $msh_t)))

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
  (alias export $msh "open-channel" (func $open_channel_f))
  (alias export $msh "send-on-channel" (func $send_on_channel_f))
  (alias export $msh "close-channel" (func $close_channel_f))
  ;; core: (msg-ptr, msg-len) -> ()
  (core func $log (canon lower (func $log_f) (memory (core memory $libc "memory"))))
  ;; core: (actor-ptr, actor-len, msg-ptr, msg-len, retptr) -> ()
  ;; retptr: disc u8 @0; ok: channel-id string ptr @4, len @8; err: string ptr @4, len @8
  (core func $open_channel (canon lower (func $open_channel_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  ;; core: (channel-ptr, channel-len, msg-ptr, msg-len, retptr) -> (); retptr: disc u8 @0; err: ptr @4, len @8
  (core func $send_on_channel (canon lower (func $send_on_channel_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  ;; core: (channel-ptr, channel-len, retptr) -> (); retptr: disc u8 @0; err: ptr @4, len @8
  (core func $close_channel (canon lower (func $close_channel_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core instance $rt (export "log" (func $log)))
  (core instance $ms
    (export "open-channel" (func $open_channel))
    (export "send-on-channel" (func $send_on_channel))
    (export "close-channel" (func $close_channel)))

  ;; --- the actor -------------------------------------------------------------
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "libc" "realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
    (import "rt" "log" (func $log (param i32 i32)))
    (import "ms" "open-channel" (func $open_channel (param i32 i32 i32 i32 i32)))
    (import "ms" "send-on-channel" (func $send_on_channel (param i32 i32 i32 i32 i32)))
    (import "ms" "close-channel" (func $close_channel (param i32 i32 i32)))

    (global $RET i32 (i32.const 1024))
    (global $IRET i32 (i32.const 1152))
    (global $IRET2 i32 (i32.const 1168))
    (data (i32.const 16) "opener ready")             ;; 12 bytes
    (data (i32.const 32) "hello")                    ;; 5 bytes
    (data (i32.const 48) "one")                      ;; 3 bytes
    (data (i32.const 64) "error: ")                  ;; 7 bytes
    (data (i32.const 80) "opener got: ")             ;; 12 bytes
    (data (i32.const 96) "opener: channel closed")   ;; 22 bytes

    ;; concat(a, a-len, b, b-len) -> ptr of a fresh heap buffer holding a ++ b
    (func $concat (param $a i32) (param $al i32) (param $b i32) (param $bl i32) (result i32)
      (local $p i32)
      (local.set $p (call $realloc (i32.const 0) (i32.const 0) (i32.const 1)
                      (i32.add (local.get $al) (local.get $bl))))
      (memory.copy (local.get $p) (local.get $a) (local.get $al))
      (memory.copy (i32.add (local.get $p) (local.get $al)) (local.get $b) (local.get $bl))
      (local.get $p))

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
      (call $log (i32.const 16) (i32.const 12))
      (call $ok_state (local.get $sd) (local.get $sp) (local.get $sl)))

    ;; handle-request: func(state: option<list<u8>>, params: tuple<string, list<u8>>)
    ;;                 -> result<tuple<option<list<u8>>, tuple<option<list<u8>>>>, string>
    ;; core params: state-disc, state-ptr, state-len, request-id-ptr, request-id-len, msg-ptr, msg-len
    ;; returns RET: disc u8 @0; ok: state disc u8 @4, ptr @8, len @12; reply disc u8 @16, ptr @20, len @24
    (func (export "handle-request") (param $sd i32) (param $sp i32) (param $sl i32)
                                    (param $rp i32) (param $rl i32) (param $mp i32) (param $ml i32) (result i32)
      (local $chp i32) (local $chl i32)
      ;; open-channel(target, "hello") -> IRET
      (call $open_channel (local.get $mp) (local.get $ml) (i32.const 32) (i32.const 5) (global.get $IRET))
      (i32.store8 offset=16 (global.get $RET) (i32.const 1))
      (if (i32.load8_u (global.get $IRET))
        (then ;; err(e): reply some("error: " ++ e), state unchanged
          (i32.store offset=20 (global.get $RET)
            (call $concat (i32.const 64) (i32.const 7)
                          (i32.load offset=4 (global.get $IRET)) (i32.load offset=8 (global.get $IRET))))
          (i32.store offset=24 (global.get $RET)
            (i32.add (i32.const 7) (i32.load offset=8 (global.get $IRET))))
          (return (call $ok_state (local.get $sd) (local.get $sp) (local.get $sl)))))
      ;; ok(channel-id)
      (local.set $chp (i32.load offset=4 (global.get $IRET)))
      (local.set $chl (i32.load offset=8 (global.get $IRET)))
      ;; send-on-channel(channel-id, "one") -> IRET2 (result ignored)
      (call $send_on_channel (local.get $chp) (local.get $chl) (i32.const 48) (i32.const 3) (global.get $IRET2))
      ;; reply some(channel-id); new state some(channel-id)
      (i32.store offset=20 (global.get $RET) (local.get $chp))
      (i32.store offset=24 (global.get $RET) (local.get $chl))
      (call $ok_state (i32.const 1) (local.get $chp) (local.get $chl)))

    ;; handle-channel-message: func(state: option<list<u8>>, params: tuple<channel-id, list<u8>>)
    ;;                         -> result<tuple<option<list<u8>>>, string>
    ;; core params: state-disc, state-ptr, state-len, channel-ptr, channel-len, msg-ptr, msg-len
    ;; returns RET: disc u8 @0; ok: state disc u8 @4, ptr @8, len @12
    (func (export "handle-channel-message") (param $sd i32) (param $sp i32) (param $sl i32)
                                            (param $cp i32) (param $cl i32) (param $mp i32) (param $ml i32) (result i32)
      (call $log (call $concat (i32.const 80) (i32.const 12) (local.get $mp) (local.get $ml))
                 (i32.add (i32.const 12) (local.get $ml)))
      ;; close-channel(channel) -> IRET2 (result ignored)
      (call $close_channel (local.get $cp) (local.get $cl) (global.get $IRET2))
      (call $ok_state (local.get $sd) (local.get $sp) (local.get $sl)))

    ;; handle-channel-close: func(state: option<list<u8>>, params: tuple<channel-id>)
    ;;                       -> result<tuple<option<list<u8>>>, string>
    ;; core params: state-disc, state-ptr, state-len, channel-ptr, channel-len
    ;; returns RET: disc u8 @0; ok: state disc u8 @4, ptr @8, len @12
    (func (export "handle-channel-close") (param $sd i32) (param $sp i32) (param $sl i32)
                                          (param $cp i32) (param $cl i32) (result i32)
      (call $log (i32.const 96) (i32.const 22))
      (call $ok_state (local.get $sd) (local.get $sp) (local.get $sl))))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "rt" (instance $rt)) (with "ms" (instance $ms))))

  ;; --- exports ---------------------------------------------------------------
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
  (func $handle_channel_message (param "state" (option (list u8))) (param "params" (tuple string (list u8)))
    (result (result (tuple (option (list u8))) (error string)))
    (canon lift (core func $i "handle-channel-message") (memory (core memory $libc "memory"))
      (realloc (core func $libc "realloc")) (post-return (core func $libc "post"))))
  (func $handle_channel_close (param "state" (option (list u8))) (param "params" (tuple string))
    (result (result (tuple (option (list u8))) (error string)))
    (canon lift (core func $i "handle-channel-close") (memory (core memory $libc "memory"))
      (realloc (core func $libc "realloc")) (post-return (core func $libc "post"))))
  (instance $client
    (export "handle-request" (func $handle_request))
    (export "handle-channel-message" (func $handle_channel_message))
    (export "handle-channel-close" (func $handle_channel_close)))
  (export "theater:simple/message-server-client" (instance $client)))
