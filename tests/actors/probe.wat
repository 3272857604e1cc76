;; probe: one configurable test actor. Each message is an opcode byte followed by an argument.
;;
;; World: imports theater:simple/runtime (log, get-chain, shutdown)
;;                theater:simple/message-server-host
;;                  (send, request, list-outstanding-requests, respond-to-request, cancel-request,
;;                   open-channel, send-on-channel)
;;        exports theater:simple/actor (init)
;;                theater:simple/message-server-client (handle-send, handle-request)
;;
;; init: state == "fail-init" -> err("init refused"); state == "trap-init" -> trap;
;;       state == "ask-init <actor>" -> request(actor, "d") first, whatever its answer (a slow init:
;;       a probe asked "d" never answers, so the request waits until this init's time limit);
;;       otherwise logs "probe init" and keeps the state.
;; handle-request(rid, msg) / handle-send(msg): msg = op ++ rest
;;   e  reply rest                       s  state := rest, reply "ok"
;;   t  trap (unreachable)               x  return err(rest)
;;   l  loop forever                     g  memory.grow(1) until it fails, reply "grow-failed"
;;   n  log("spam") rest-as-decimal times, reply "logged"
;;   o  log(rest) once (rest must be UTF-8), reply "logged"
;;   q  request(rest, "ep"), reply its reply or "error: <err>"
;;   d  reply none (request stays outstanding)
;;   r  respond-to-request(id, "late") for every outstanding request, reply the count
;;   c  cancel-request(id) for every outstanding request, reply the count
;;   z  shutdown(some(rest)), reply "bye"
;;   w  busy-loop rest-as-decimal million iterations, reply "done"
;;   m  "m<N> <actor>": request(actor, "x") N times, reply the last reply (benchmarks)
;;   M  "M<N> <actor>": send(actor, "x") N times, then request(actor, "x") once and reply its reply
;;   O  "O<N> <actor>": send(actor, "e" ++ i as u32 little-endian) for i = 0..N-1, then request(actor, "e")
;;      once and reply its reply (a probe receiver records each message's number: their order)
;;   h  get-chain(), reply the number of events it holds
;;   a  memory.grow(rest-as-decimal pages, 1 if none) until it fails, then trap (unreachable),
;;      as an allocator does when it cannot get more memory
;;   C  open-channel(rest, "ep"), reply the channel id or "error: <err>" (it exports no channel handler)
;;   K  "K<channel> <msg>": send-on-channel(channel, msg), reply "ok" or "error: <err>"
;;   other (or empty msg): reply "unknown"
;; handle-send runs the same dispatch; the reply is simply not part of its result.
;;
;; Memory map:
;;   16..1023    static strings
;;   1024..1055  return area of the lifted exports (RET)
;;   1152..1167  return area for request / list-outstanding-requests (IRET)
;;   1168..1183  return area for shutdown / respond-to-request / cancel-request (IRET2)
;;   4096..      bump heap (realloc); reset to 4096 by the post-return of every export
;;   pages added by `g` are written (first and last byte) but never used afterwards
(component
  ;; --- imports -------------------------------------------------------------
  (type $runtime_t (instance
    ;; log: func(msg: string)
    (export "log" (func (param "msg" string)))
    ;; record event { event-type: string, parent: option<u64>, data: list<u8> }
    (type $event (record (field "event-type" string) (field "parent" (option u64)) (field "data" (list u8))))
    (export "event" (type $event_e (eq $event)))
    ;; record meta-event { hash: u64, event: event }
    (type $meta (record (field "hash" u64) (field "event" $event_e)))
    (export "meta-event" (type $meta_e (eq $meta)))
    ;; record chain { events: list<meta-event> }
    (type $chain (record (field "events" (list $meta_e))))
    (export "chain" (type $chain_e (eq $chain)))
    ;; get-chain: func() -> chain
    (export "get-chain" (func (result $chain_e)))
    ;; shutdown: func(data: option<list<u8>>) -> result<_, string>
    (export "shutdown" (func (param "data" (option (list u8))) (result (result (error string)))))))
  (import "theater:simple/runtime" (instance $runtime (type $runtime_t)))
  (type $msh_t (instance
    ;; request: func(actor-id: actor-id, msg: list<u8>) -> result<list<u8>, string>
    (export "send" (func (param "actor-id" string) (param "msg" (list u8))
      (result (result (error string)))))
    (export "request" (func (param "actor-id" string) (param "msg" (list u8))
                            (result (result (list u8) (error string)))))
    ;; list-outstanding-requests: func() -> list<string>
    (export "list-outstanding-requests" (func (result (list string))))
    ;; respond-to-request: func(request-id: string, response: list<u8>) -> result<_, string>
    (export "respond-to-request" (func (param "request-id" string) (param "response" (list u8))
                                       (result (result (error string)))))
    ;; cancel-request: func(request-id: string) -> result<_, string>
    (export "cancel-request" (func (param "request-id" string) (result (result (error string)))))
    ;; open-channel: func(actor-id, initial-msg: list<u8>) -> result<channel-id, string>
    (export "open-channel" (func (param "actor-id" string) (param "initial-msg" (list u8))
                                 (result (result string (error string)))))
    ;; send-on-channel: func(channel-id, msg: list<u8>) -> result<_, string>
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
  (alias export $runtime "shutdown" (func $shutdown_f))
  (alias export $runtime "get-chain" (func $get_chain_f))
  (alias export $msh "send" (func $send_f))
  (alias export $msh "request" (func $request_f))
  (alias export $msh "list-outstanding-requests" (func $list_outstanding_f))
  (alias export $msh "respond-to-request" (func $respond_f))
  (alias export $msh "cancel-request" (func $cancel_f))
  (alias export $msh "open-channel" (func $open_channel_f))
  (alias export $msh "send-on-channel" (func $send_on_channel_f))
  ;; core: (msg-ptr, msg-len) -> ()
  (core func $log (canon lower (func $log_f) (memory (core memory $libc "memory"))))
  ;; core: (data-disc, data-ptr, data-len, retptr) -> (); retptr: disc u8 @0; err: string ptr @4, len @8
  (core func $shutdown (canon lower (func $shutdown_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  ;; core: (id-ptr, id-len, msg-ptr, msg-len, retptr) -> ()
  ;; retptr: disc u8 @0; ok: list ptr @4, len @8; err: string ptr @4, len @8
  (core func $send (canon lower (func $send_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $request (canon lower (func $request_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $open_channel (canon lower (func $open_channel_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $send_on_channel (canon lower (func $send_on_channel_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  ;; core: (retptr) -> (); retptr: list ptr @0, len @4; each element is a string (ptr @0, len @4), 8 bytes
  (core func $list_outstanding (canon lower (func $list_outstanding_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  ;; core: (id-ptr, id-len, resp-ptr, resp-len, retptr) -> (); retptr: disc u8 @0; err: ptr @4, len @8
  (core func $respond (canon lower (func $respond_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  ;; core: (id-ptr, id-len, retptr) -> (); retptr: disc u8 @0; err: ptr @4, len @8
  (core func $cancel (canon lower (func $cancel_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  ;; core: (retptr) -> (); retptr: list ptr @0, len @4 (elements of 40 bytes)
  (core func $get_chain (canon lower (func $get_chain_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core instance $rt (export "log" (func $log)) (export "shutdown" (func $shutdown))
                     (export "get-chain" (func $get_chain)))
  (core instance $ms
    (export "send" (func $send))
    (export "request" (func $request))
    (export "list-outstanding-requests" (func $list_outstanding))
    (export "respond-to-request" (func $respond))
    (export "cancel-request" (func $cancel))
    (export "open-channel" (func $open_channel))
    (export "send-on-channel" (func $send_on_channel)))

  ;; --- the actor -------------------------------------------------------------
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "libc" "realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
    (import "rt" "log" (func $log (param i32 i32)))
    (import "rt" "shutdown" (func $shutdown (param i32 i32 i32 i32)))
    (import "rt" "get-chain" (func $get_chain (param i32)))
    (import "ms" "send" (func $send (param i32 i32 i32 i32 i32)))
    (import "ms" "request" (func $request (param i32 i32 i32 i32 i32)))
    (import "ms" "list-outstanding-requests" (func $list_outstanding (param i32)))
    (import "ms" "respond-to-request" (func $respond (param i32 i32 i32 i32 i32)))
    (import "ms" "cancel-request" (func $cancel (param i32 i32 i32)))
    (import "ms" "open-channel" (func $open_channel (param i32 i32 i32 i32 i32)))
    (import "ms" "send-on-channel" (func $send_on_channel (param i32 i32 i32 i32 i32)))

    (global $RET i32 (i32.const 1024))
    (global $IRET i32 (i32.const 1152))
    (global $IRET2 i32 (i32.const 1168))
    (data (i32.const 16) "probe init")      ;; 10 bytes
    (data (i32.const 32) "fail-init")       ;; 9 bytes
    (data (i32.const 48) "trap-init")       ;; 9 bytes
    (data (i32.const 64) "init refused")    ;; 12 bytes
    (data (i32.const 80) "ok")              ;; 2 bytes
    (data (i32.const 88) "ep")              ;; 2 bytes
    (data (i32.const 96) "grow-failed")     ;; 11 bytes
    (data (i32.const 112) "spam")           ;; 4 bytes
    (data (i32.const 120) "logged")         ;; 6 bytes
    (data (i32.const 128) "error: ")        ;; 7 bytes
    (data (i32.const 136) "late")           ;; 4 bytes
    (data (i32.const 144) "bye")            ;; 3 bytes
    (data (i32.const 152) "done")           ;; 4 bytes
    (data (i32.const 160) "unknown")        ;; 7 bytes
    (data (i32.const 176) "x")              ;; 1 byte
    (data (i32.const 184) "ask-init ")      ;; 9 bytes
    (data (i32.const 196) "d")              ;; 1 byte

    ;; concat(a, a-len, b, b-len) -> ptr of a fresh heap buffer holding a ++ b
    (func $concat (param $a i32) (param $al i32) (param $b i32) (param $bl i32) (result i32)
      (local $p i32)
      (local.set $p (call $realloc (i32.const 0) (i32.const 0) (i32.const 1)
                      (i32.add (local.get $al) (local.get $bl))))
      (memory.copy (local.get $p) (local.get $a) (local.get $al))
      (memory.copy (i32.add (local.get $p) (local.get $al)) (local.get $b) (local.get $bl))
      (local.get $p))

    ;; eq(a, a-len, b, b-len) -> 1 if the byte strings are equal, else 0
    (func $eq (param $a i32) (param $al i32) (param $b i32) (param $bl i32) (result i32)
      (local $i i32)
      (if (i32.ne (local.get $al) (local.get $bl)) (then (return (i32.const 0))))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $al)))
          (if (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                      (i32.load8_u (i32.add (local.get $b) (local.get $i))))
            (then (return (i32.const 0))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      (i32.const 1))

    ;; atoi(ptr, len) -> u64: leading ASCII digits of the bytes (0 if none)
    (func $atoi (param $p i32) (param $l i32) (result i64)
      (local $n i64) (local $end i32) (local $c i32)
      (local.set $end (i32.add (local.get $p) (local.get $l)))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
          (local.set $c (i32.sub (i32.load8_u (local.get $p)) (i32.const 48)))
          (br_if $done (i32.gt_u (local.get $c) (i32.const 9)))
          (local.set $n (i64.add (i64.mul (local.get $n) (i64.const 10)) (i64.extend_i32_u (local.get $c))))
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (br $next)))
      (local.get $n))

    ;; after_number(ptr, len) -> offset of the first byte after the leading digits and one space
    (func $after_number (param $p i32) (param $l i32) (result i32)
      (local $i i32)
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $l)))
          (br_if $done (i32.eq (i32.load8_u (i32.add (local.get $p) (local.get $i))) (i32.const 32)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      (i32.add (local.get $i) (i32.const 1)))

    ;; utoa(n) -> (ptr, len): n as ASCII decimal in a fresh 20-byte heap buffer
    (func $utoa (param $n i64) (result i32 i32)
      (local $end i32) (local $i i32)
      (local.set $end (i32.add (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 20))
                               (i32.const 20)))
      (local.set $i (local.get $end))
      (loop $digit
        (local.set $i (i32.sub (local.get $i) (i32.const 1)))
        (i32.store8 (local.get $i)
          (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $n) (i64.const 10)))))
        (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
        (br_if $digit (i64.ne (local.get $n) (i64.const 0))))
      (local.get $i)
      (i32.sub (local.get $end) (local.get $i)))

    ;; reply(ptr, len): sets the reply slot of RET (@16..28) to some(bytes)
    (func $reply (param $p i32) (param $l i32)
      (i32.store8 offset=16 (global.get $RET) (i32.const 1))
      (i32.store offset=20 (global.get $RET) (local.get $p))
      (i32.store offset=24 (global.get $RET) (local.get $l)))

    ;; each_outstanding(cancel): for every id of list-outstanding-requests(), calls
    ;; respond-to-request(id, "late") (cancel = 0) or cancel-request(id) (cancel = 1);
    ;; replies with the number of ids as ASCII decimal.
    (func $each_outstanding (param $cancel i32)
      (local $lp i32) (local $n i32) (local $i i32) (local $e i32)
      (call $list_outstanding (global.get $IRET))
      (local.set $lp (i32.load (global.get $IRET)))
      (local.set $n (i32.load offset=4 (global.get $IRET)))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (local.set $e (i32.add (local.get $lp) (i32.shl (local.get $i) (i32.const 3))))
          (if (local.get $cancel)
            (then (call $cancel (i32.load (local.get $e)) (i32.load offset=4 (local.get $e)) (global.get $IRET2)))
            (else (call $respond (i32.load (local.get $e)) (i32.load offset=4 (local.get $e))
                                 (i32.const 136) (i32.const 4) (global.get $IRET2))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      (call $utoa (i64.extend_i32_u (local.get $n)))
      (call $reply))

    ;; dispatch(state-disc, state-ptr, state-len, msg-ptr, msg-len) -> RET
    ;; writes RET in handle-request's layout: disc u8 @0; ok: state disc u8 @4, ptr @8, len @12;
    ;; reply disc u8 @16, ptr @20, len @24; err: string ptr @4, len @8.
    ;; handle-send's result layout is the first 16 bytes of the same thing.
    (func $dispatch (param $sd i32) (param $sp i32) (param $sl i32) (param $mp i32) (param $ml i32) (result i32)
      (local $op i32) (local $ap i32) (local $al i32) (local $n i64) (local $i i64) (local $pg i32) (local $buf i32)
      ;; default result: ok, state unchanged, reply none
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (local.get $sd))
      (i32.store offset=8 (global.get $RET) (local.get $sp))
      (i32.store offset=12 (global.get $RET) (local.get $sl))
      (i32.store8 offset=16 (global.get $RET) (i32.const 0))
      (if (i32.eqz (local.get $ml))
        (then (call $reply (i32.const 160) (i32.const 7)) (return (global.get $RET))))
      (local.set $op (i32.load8_u (local.get $mp)))
      (local.set $ap (i32.add (local.get $mp) (i32.const 1)))
      (local.set $al (i32.sub (local.get $ml) (i32.const 1)))

      ;; 'e' echo
      (if (i32.eq (local.get $op) (i32.const 0x65))
        (then (call $reply (local.get $ap) (local.get $al)) (return (global.get $RET))))
      ;; 's' set state
      (if (i32.eq (local.get $op) (i32.const 0x73))
        (then
          (i32.store8 offset=4 (global.get $RET) (i32.const 1))
          (i32.store offset=8 (global.get $RET) (local.get $ap))
          (i32.store offset=12 (global.get $RET) (local.get $al))
          (call $reply (i32.const 80) (i32.const 2))
          (return (global.get $RET))))
      ;; 't' trap
      (if (i32.eq (local.get $op) (i32.const 0x74))
        (then unreachable))
      ;; 'x' err(rest)
      (if (i32.eq (local.get $op) (i32.const 0x78))
        (then
          (i32.store8 (global.get $RET) (i32.const 1))
          (i32.store offset=4 (global.get $RET) (local.get $ap))
          (i32.store offset=8 (global.get $RET) (local.get $al))
          (return (global.get $RET))))
      ;; 'l' loop forever
      (if (i32.eq (local.get $op) (i32.const 0x6c))
        (then (loop $forever (br $forever))))
      ;; 'g' grow memory one page at a time until memory.grow fails
      (if (i32.eq (local.get $op) (i32.const 0x67))
        (then
          (loop $grow
            (local.set $pg (memory.grow (i32.const 1)))
            (if (i32.ne (local.get $pg) (i32.const -1))
              (then
                (i32.store (i32.shl (local.get $pg) (i32.const 16)) (local.get $pg))
                (i32.store8 (i32.add (i32.shl (local.get $pg) (i32.const 16)) (i32.const 65535)) (i32.const 1))
                (br $grow))))
          (call $reply (i32.const 96) (i32.const 11))
          (return (global.get $RET))))
      ;; 'a' grow memory N pages at a time until refused, then trap like an allocator giving up
      (if (i32.eq (local.get $op) (i32.const 0x61))
        (then
          (local.set $n (call $atoi (local.get $ap) (local.get $al)))
          (if (i64.eqz (local.get $n)) (then (local.set $n (i64.const 1))))
          (loop $more
            (br_if $more (i32.ne (memory.grow (i32.wrap_i64 (local.get $n))) (i32.const -1))))
          unreachable))
      ;; 'n' log "spam" N times
      (if (i32.eq (local.get $op) (i32.const 0x6e))
        (then
          (local.set $n (call $atoi (local.get $ap) (local.get $al)))
          (block $done
            (loop $next
              (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
              (call $log (i32.const 112) (i32.const 4))
              (local.set $i (i64.add (local.get $i) (i64.const 1)))
              (br $next)))
          (call $reply (i32.const 120) (i32.const 6))
          (return (global.get $RET))))
      ;; 'o' log(rest)
      (if (i32.eq (local.get $op) (i32.const 0x6f))
        (then
          (call $log (local.get $ap) (local.get $al))
          (call $reply (i32.const 120) (i32.const 6))
          (return (global.get $RET))))
      ;; 'q' request(rest, "ep"); 'C' open-channel(rest, "ep"): the same result layout
      (if (i32.or (i32.eq (local.get $op) (i32.const 0x71)) (i32.eq (local.get $op) (i32.const 0x43)))
        (then
          (if (i32.eq (local.get $op) (i32.const 0x71))
            (then (call $request (local.get $ap) (local.get $al) (i32.const 88) (i32.const 2) (global.get $IRET)))
            (else (call $open_channel (local.get $ap) (local.get $al) (i32.const 88) (i32.const 2)
                                      (global.get $IRET))))
          (if (i32.eqz (i32.load8_u (global.get $IRET)))
            (then (call $reply (i32.load offset=4 (global.get $IRET)) (i32.load offset=8 (global.get $IRET))))
            (else (call $reply
                    (call $concat (i32.const 128) (i32.const 7)
                                  (i32.load offset=4 (global.get $IRET)) (i32.load offset=8 (global.get $IRET)))
                    (i32.add (i32.const 7) (i32.load offset=8 (global.get $IRET))))))
          (return (global.get $RET))))
      ;; 'K' "K<channel> <msg>": send-on-channel(channel, msg)
      (if (i32.eq (local.get $op) (i32.const 0x4b))
        (then
          (local.set $pg (call $after_number (local.get $ap) (local.get $al)))
          (call $send_on_channel (local.get $ap) (i32.sub (local.get $pg) (i32.const 1))
                                 (i32.add (local.get $ap) (local.get $pg)) (i32.sub (local.get $al) (local.get $pg))
                                 (global.get $IRET2))
          (if (i32.eqz (i32.load8_u (global.get $IRET2)))
            (then (call $reply (i32.const 80) (i32.const 2)))
            (else (call $reply
                    (call $concat (i32.const 128) (i32.const 7)
                                  (i32.load offset=4 (global.get $IRET2)) (i32.load offset=8 (global.get $IRET2)))
                    (i32.add (i32.const 7) (i32.load offset=8 (global.get $IRET2))))))
          (return (global.get $RET))))
      ;; 'h' get-chain, reply the number of events it holds
      (if (i32.eq (local.get $op) (i32.const 0x68))
        (then
          (call $get_chain (global.get $IRET))
          (call $utoa (i64.extend_i32_u (i32.load offset=4 (global.get $IRET))))
          (call $reply)
          (return (global.get $RET))))
      ;; 'd' defer: reply none
      (if (i32.eq (local.get $op) (i32.const 0x64))
        (then (return (global.get $RET))))
      ;; 'r' respond to all outstanding requests with "late"
      (if (i32.eq (local.get $op) (i32.const 0x72))
        (then (call $each_outstanding (i32.const 0)) (return (global.get $RET))))
      ;; 'c' cancel all outstanding requests
      (if (i32.eq (local.get $op) (i32.const 0x63))
        (then (call $each_outstanding (i32.const 1)) (return (global.get $RET))))
      ;; 'z' shutdown(some(rest)); its result is ignored
      (if (i32.eq (local.get $op) (i32.const 0x7a))
        (then
          (call $shutdown (i32.const 1) (local.get $ap) (local.get $al) (global.get $IRET2))
          (call $reply (i32.const 144) (i32.const 3))
          (return (global.get $RET))))
      ;; 'w' busy-loop N million iterations
      (if (i32.eq (local.get $op) (i32.const 0x77))
        (then
          (local.set $n (i64.mul (call $atoi (local.get $ap) (local.get $al)) (i64.const 1000000)))
          (block $done
            (loop $next
              (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
              (local.set $i (i64.add (local.get $i) (i64.const 1)))
              (br $next)))
          (call $reply (i32.const 152) (i32.const 4))
          (return (global.get $RET))))
;; 'm' / 'M': N requests, or N sends and one request, to the actor named after the count
      (if (i32.or (i32.eq (local.get $op) (i32.const 0x6d)) (i32.eq (local.get $op) (i32.const 0x4d)))
        (then
          (local.set $n (call $atoi (local.get $ap) (local.get $al)))
          (local.set $pg (call $after_number (local.get $ap) (local.get $al)))
          (local.set $ap (i32.add (local.get $ap) (local.get $pg)))
          (local.set $al (i32.sub (local.get $al) (local.get $pg)))
          (block $done
            (loop $next
              (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
              (if (i32.eq (local.get $op) (i32.const 0x6d))
                (then (call $request (local.get $ap) (local.get $al) (i32.const 176) (i32.const 1) (global.get $IRET)))
                (else (call $send (local.get $ap) (local.get $al) (i32.const 176) (i32.const 1) (global.get $IRET2))))
              (local.set $i (i64.add (local.get $i) (i64.const 1)))
              (br $next)))
          (if (i32.eq (local.get $op) (i32.const 0x4d))
            (then (call $request (local.get $ap) (local.get $al) (i32.const 176) (i32.const 1) (global.get $IRET))))
          (call $reply (i32.load offset=4 (global.get $IRET)) (i32.load offset=8 (global.get $IRET)))
          (return (global.get $RET))))
;; 'O': N numbered sends, then one request, to the actor named after the count
      (if (i32.eq (local.get $op) (i32.const 0x4f))
        (then
          (local.set $n (call $atoi (local.get $ap) (local.get $al)))
          (local.set $pg (call $after_number (local.get $ap) (local.get $al)))
          (local.set $ap (i32.add (local.get $ap) (local.get $pg)))
          (local.set $al (i32.sub (local.get $al) (local.get $pg)))
          (local.set $buf (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 5)))
          (i32.store8 (local.get $buf) (i32.const 0x65))                                   ;; "e"
          (block $done
            (loop $next
              (br_if $done (i64.ge_u (local.get $i) (local.get $n)))
              (i32.store offset=1 align=1 (local.get $buf) (i32.wrap_i64 (local.get $i)))
              (call $send (local.get $ap) (local.get $al) (local.get $buf) (i32.const 5) (global.get $IRET2))
              (local.set $i (i64.add (local.get $i) (i64.const 1)))
              (br $next)))
          (call $request (local.get $ap) (local.get $al) (local.get $buf) (i32.const 1) (global.get $IRET))
          (call $reply (i32.load offset=4 (global.get $IRET)) (i32.load offset=8 (global.get $IRET)))
          (return (global.get $RET))))
      ;; anything else
      (call $reply (i32.const 160) (i32.const 7))
      (global.get $RET))

    ;; init: func(state: option<list<u8>>, params: tuple<string>) -> result<tuple<option<list<u8>>>, string>
    ;; core params: state-disc, state-ptr, state-len, id-ptr, id-len
    ;; returns RET: disc u8 @0; ok: state disc u8 @4, ptr @8, len @12; err: string ptr @4, len @8
    (func (export "init") (param $sd i32) (param $sp i32) (param $sl i32) (param $idp i32) (param $idl i32) (result i32)
      (if (local.get $sd)
        (then
          (if (call $eq (local.get $sp) (local.get $sl) (i32.const 32) (i32.const 9))   ;; "fail-init"
            (then
              (i32.store8 (global.get $RET) (i32.const 1))
              (i32.store offset=4 (global.get $RET) (i32.const 64))                   ;; "init refused"
              (i32.store offset=8 (global.get $RET) (i32.const 12))
              (return (global.get $RET))))
          (if (call $eq (local.get $sp) (local.get $sl) (i32.const 48) (i32.const 9))   ;; "trap-init"
            (then unreachable))
          (if (i32.gt_u (local.get $sl) (i32.const 9))
            (then
              (if (call $eq (local.get $sp) (i32.const 9) (i32.const 184) (i32.const 9))   ;; "ask-init "
                (then (call $request (i32.add (local.get $sp) (i32.const 9)) (i32.sub (local.get $sl) (i32.const 9))
                                     (i32.const 196) (i32.const 1) (global.get $IRET))))))))
      (call $log (i32.const 16) (i32.const 10))
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (local.get $sd))
      (i32.store offset=8 (global.get $RET) (local.get $sp))
      (i32.store offset=12 (global.get $RET) (local.get $sl))
      (global.get $RET))

    ;; handle-send: func(state: option<list<u8>>, params: tuple<list<u8>>) -> result<tuple<option<list<u8>>>, string>
    ;; core params: state-disc, state-ptr, state-len, msg-ptr, msg-len
    ;; returns RET: disc u8 @0; ok: state disc u8 @4, ptr @8, len @12; err: string ptr @4, len @8
    (func (export "handle-send") (param $sd i32) (param $sp i32) (param $sl i32) (param $mp i32) (param $ml i32) (result i32)
      (call $dispatch (local.get $sd) (local.get $sp) (local.get $sl) (local.get $mp) (local.get $ml)))

    ;; handle-request: func(state: option<list<u8>>, params: tuple<string, list<u8>>)
    ;;                 -> result<tuple<option<list<u8>>, tuple<option<list<u8>>>>, string>
    ;; core params: state-disc, state-ptr, state-len, request-id-ptr, request-id-len, msg-ptr, msg-len
    ;; returns RET: disc u8 @0; ok: state disc u8 @4, ptr @8, len @12; reply disc u8 @16, ptr @20, len @24;
    ;;              err: string ptr @4, len @8
    (func (export "handle-request") (param $sd i32) (param $sp i32) (param $sl i32)
                                    (param $rp i32) (param $rl i32) (param $mp i32) (param $ml i32) (result i32)
      (call $dispatch (local.get $sd) (local.get $sp) (local.get $sl) (local.get $mp) (local.get $ml))))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "rt" (instance $rt)) (with "ms" (instance $ms))))

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
