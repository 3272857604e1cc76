;; flood: accepts every channel and, for each message on it, sends back many (back-pressure tests).
;;
;; World: imports theater:simple/runtime (log)
;;                theater:simple/message-server-host (send-on-channel)
;;        exports theater:simple/actor (init)
;;                theater:simple/message-server-client
;;                  (handle-channel-open, handle-channel-message, handle-channel-close)
;;
;; handle-channel-open accepts, with no first message. A channel message of 8 bytes, count and
;; size (u32 little-endian each), sends count messages of size bytes back on that channel, each
;; starting with its number (u32 little-endian, 0 first; the rest zeros); the first send that
;; fails logs "flood: <err>" and ends the loop. Other messages, and closes, do nothing. The
;; state is never changed.
;;
;; Memory map:
;;   16..1023    static strings
;;   1024..1055  return area of the lifted exports (RET)
;;   1152..1167  return area for lowered imports (IRET)
;;   4096..      bump heap (realloc); reset to 4096 by the post-return of every export
(component
  ;; --- imports -------------------------------------------------------------
  (type $runtime_t (instance
    ;; log: func(msg: string)
    (export "log" (func (param "msg" string)))))
  (import "theater:simple/runtime" (instance $runtime (type $runtime_t)))
  (type $msh_t (instance
    ;; send-on-channel: func(channel-id: channel-id, msg: list<u8>) -> result<_, string>
    (export "send-on-channel" (func (param "channel-id" string) (param "msg" (list u8))
                                    (result (result (error string)))))))
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
  (alias export $msh "send-on-channel" (func $send_on_channel_f))
  ;; core: (msg-ptr, msg-len) -> ()
  (core func $log (canon lower (func $log_f) (memory (core memory $libc "memory"))))
  ;; core: (channel-ptr, channel-len, msg-ptr, msg-len, retptr) -> ()
  ;; retptr: disc u8 @0; err: string ptr @4, len @8
  (core func $send_on_channel (canon lower (func $send_on_channel_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core instance $rt (export "log" (func $log)))
  (core instance $ms (export "send-on-channel" (func $send_on_channel)))

  ;; --- the actor -------------------------------------------------------------
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "libc" "realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
    (import "rt" "log" (func $log (param i32 i32)))
    (import "ms" "send-on-channel" (func $send_on_channel (param i32 i32 i32 i32 i32)))

    (global $RET i32 (i32.const 1024))
    (global $IRET i32 (i32.const 1152))
    (data (i32.const 16) "flood: ")                 ;; 7 bytes

    ;; ok_state(state-disc, state-ptr, state-len) -> RET after writing ok((state))
    (func $ok_state (param $sd i32) (param $sp i32) (param $sl i32) (result i32)
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (local.get $sd))
      (i32.store offset=8 (global.get $RET) (local.get $sp))
      (i32.store offset=12 (global.get $RET) (local.get $sl))
      (global.get $RET))

    ;; init: core params state-disc, state-ptr, state-len, id-ptr, id-len
    (func (export "init") (param $sd i32) (param $sp i32) (param $sl i32) (param $idp i32) (param $idl i32) (result i32)
      (call $ok_state (local.get $sd) (local.get $sp) (local.get $sl)))

    ;; handle-channel-open: accepted = true, message = none
    (func (export "handle-channel-open") (param $sd i32) (param $sp i32) (param $sl i32)
                                         (param $cp i32) (param $cl i32) (param $mp i32) (param $ml i32) (result i32)
      (i32.store8 offset=16 (global.get $RET) (i32.const 1))
      (i32.store8 offset=20 (global.get $RET) (i32.const 0))
      (call $ok_state (local.get $sd) (local.get $sp) (local.get $sl)))

    ;; handle-channel-message: "count size" (u32 LE each) -> count messages of size bytes
    (func (export "handle-channel-message") (param $sd i32) (param $sp i32) (param $sl i32)
                                            (param $cp i32) (param $cl i32) (param $mp i32) (param $ml i32) (result i32)
      (local $n i32) (local $size i32) (local $buf i32) (local $i i32) (local $p i32)
      (if (i32.eq (local.get $ml) (i32.const 8))
        (then
          (local.set $n (i32.load (local.get $mp)))
          (local.set $size (i32.load offset=4 (local.get $mp)))
          ;; one buffer for every message (at least 4 bytes: the number is written there)
          (local.set $buf (call $realloc (i32.const 0) (i32.const 0) (i32.const 4)
                            (select (local.get $size) (i32.const 4) (i32.gt_u (local.get $size) (i32.const 4)))))
          (memory.fill (local.get $buf) (i32.const 0) (local.get $size))
          (block $done
            (loop $next
              (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
              (i32.store (local.get $buf) (local.get $i))
              (call $send_on_channel (local.get $cp) (local.get $cl) (local.get $buf) (local.get $size)
                                     (global.get $IRET))
              (if (i32.load8_u (global.get $IRET))
                (then ;; err(e): log("flood: " ++ e), stop
                  (local.set $p (call $realloc (i32.const 0) (i32.const 0) (i32.const 1)
                                  (i32.add (i32.const 7) (i32.load offset=8 (global.get $IRET)))))
                  (memory.copy (local.get $p) (i32.const 16) (i32.const 7))
                  (memory.copy (i32.add (local.get $p) (i32.const 7)) (i32.load offset=4 (global.get $IRET))
                               (i32.load offset=8 (global.get $IRET)))
                  (call $log (local.get $p) (i32.add (i32.const 7) (i32.load offset=8 (global.get $IRET))))
                  (br $done)))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br $next)))))
      (call $ok_state (local.get $sd) (local.get $sp) (local.get $sl)))

    ;; handle-channel-close: nothing to do
    (func (export "handle-channel-close") (param $sd i32) (param $sp i32) (param $sl i32)
                                          (param $cp i32) (param $cl i32) (result i32)
      (call $ok_state (local.get $sd) (local.get $sp) (local.get $sl))))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "rt" (instance $rt)) (with "ms" (instance $ms))))

  ;; --- exports ---------------------------------------------------------------
  (func $init (param "state" (option (list u8))) (param "params" (tuple string))
    (result (result (tuple (option (list u8))) (error string)))
    (canon lift (core func $i "init") (memory (core memory $libc "memory"))
      (realloc (core func $libc "realloc")) (post-return (core func $libc "post"))))
  (instance $actor (export "init" (func $init)))
  (export "theater:simple/actor" (instance $actor))

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
    (export "handle-channel-open" (func $handle_channel_open))
    (export "handle-channel-message" (func $handle_channel_message))
    (export "handle-channel-close" (func $handle_channel_close)))
  (export "theater:simple/message-server-client" (instance $client)))
