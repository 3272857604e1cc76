;; parent: a supervising test actor. It spawns and manages children on request and keeps
;; a note of every supervisor-handlers callback in its state, so a test can read them back.
;;
;; World: imports theater:simple/types (wit-error-type, wit-actor-error, chain-event, actor-id; types only)
;;                theater:simple/runtime (log)
;;                theater:simple/supervisor (spawn, resume, list-children, stop-child,
;;                  restart-child, get-child-state, get-child-events)
;;                theater:simple/message-server-host (send, request)
;;        exports theater:simple/actor (init)
;;                theater:simple/message-server-client (handle-send, handle-request)
;;                theater:simple/supervisor-handlers
;;                  (handle-child-error, handle-child-exit, handle-child-external-stop)
;;
;; init: logs "parent init" and keeps the state.
;; handle-request(rid, msg) / handle-send(msg): msg = op ++ rest; handle-send drops the reply.
;;   S  spawn(rest, none)                        -> child id, or "error: <err>"  (rest: path or TOML text)
;;   I  "I<path> <bytes>": spawn(path, some(bytes)) -> child id, or "error: <err>"
;;   R  "R<path> <state>": resume(path, some(state)) -> child id, or "error: <err>"
;;   L  list-children()                          -> ids joined with "," ("" if none)
;;   K  stop-child(rest)                         -> "ok" or "error: <err>"
;;   T  restart-child(rest)                      -> "ok" or "error: <err>"
;;   G  get-child-state(rest)                    -> the state bytes, "none", or "error: <err>"
;;   E  get-child-events(rest)                   -> the event types joined with ",", or "error: <err>"
;;   Q  "Q<child-id> <message>": request(child-id, message) -> its reply, or "error: <err>"
;;   P  "P<child-id> <message>": send(child-id, message)    -> "ok" or "error: <err>"
;;   N  the actor's state (the notes below; "" if none)
;;   other (or empty msg): "unknown"
;;   ("<a> <b>" splits at the first space; without a space, b is empty.)
;; supervisor-handlers: each callback appends one note to the state and logs it:
;;   handle-child-error(child-id, {error-type, data})  "error:<child-id>:<error-type>;" or
;;                                                     "error:<child-id>:<error-type>/<data>;"
;;   handle-child-exit(child-id, data)                 "exit:<child-id>:<data>;" ("none" if data is none)
;;   handle-child-external-stop(child-id)              "external:<child-id>:-;"
;;   The logged copy has bytes >= 0x80 replaced by '?' (log takes a string); the state keeps them.
;;
;; Memory map:
;;   16..127     static strings
;;   128..415    wit-error-type case names, case i at 128 + 32*i
;;   448..483    their lengths, u32 each, case i at 448 + 4*i
;;   1024..1055  return area of the lifted exports (RET)
;;   1152..1167  return area for lowered imports (IRET)
;;   4096..      bump heap (realloc); reset to 4096 by the post-return of every export
(component $parent
  ;; --- imports -------------------------------------------------------------
  ;; theater:simple/types: only types, so the other interfaces can `use` them by name (the host
  ;; links it as an empty instance). Every record/enum a function type uses, directly or inside
  ;; another record, must be exported from the instance type with (eq ...), or wasmtime rejects
  ;; the import ("instance not valid to be used as import"). `(eq string)` does not parse: name it first.
  (type $types_t (instance
    ;; enum wit-error-type { operation-timeout, ..., paused }
    (type $error_type (enum "operation-timeout" "channel-closed" "shutting-down" "function-not-found"
                            "type-mismatch" "internal" "serialization-error" "update-component-error" "paused"))
    (export "wit-error-type" (type $error_type_e (eq $error_type)))
    ;; record wit-actor-error { error-type: wit-error-type, data: option<list<u8>> }
    (type $actor_error (record (field "error-type" $error_type_e) (field "data" (option (list u8)))))
    (export "wit-actor-error" (type (eq $actor_error)))
    ;; record chain-event { hash: list<u8>, parent-hash: option<list<u8>>, event-type: string,
    ;;                      data: list<u8>, timestamp: u64, description: option<string> }
    (type $chain_event (record (field "hash" (list u8)) (field "parent-hash" (option (list u8)))
                               (field "event-type" string) (field "data" (list u8))
                               (field "timestamp" u64) (field "description" (option string))))
    (export "chain-event" (type (eq $chain_event)))
    ;; type actor-id = string
    (type $string string)
    (export "actor-id" (type (eq $string)))))
  (import "theater:simple/types" (instance $types (type $types_t)))
  (alias export $types "wit-error-type" (type $wit_error_type))
  (alias export $types "wit-actor-error" (type $wit_actor_error))
  (alias export $types "actor-id" (type $actor_id))
  (alias export $types "chain-event" (type $chain_event))

  (type $runtime_t (instance
    ;; log: func(msg: string)
    (export "log" (func (param "msg" string)))))
  (import "theater:simple/runtime" (instance $runtime (type $runtime_t)))

  (type $supervisor_t (instance
    ;; `use types.{chain-event}`: the outer type, re-exported under its own name
    (alias outer $parent $chain_event (type $chain_event_o))
    (export "chain-event" (type $chain_event_i (eq $chain_event_o)))
    ;; spawn: func(manifest: string, init-bytes: option<list<u8>>) -> result<string, string>
    (export "spawn" (func (param "manifest" string) (param "init-bytes" (option (list u8)))
                          (result (result string (error string)))))
    ;; resume: func(manifest: string, init-state: option<list<u8>>) -> result<string, string>
    (export "resume" (func (param "manifest" string) (param "init-state" (option (list u8)))
                           (result (result string (error string)))))
    ;; list-children: func() -> list<string>
    (export "list-children" (func (result (list string))))
    ;; stop-child: func(child-id: string) -> result<_, string>
    (export "stop-child" (func (param "child-id" string) (result (result (error string)))))
    ;; restart-child: func(child-id: string) -> result<_, string>
    (export "restart-child" (func (param "child-id" string) (result (result (error string)))))
    ;; get-child-state: func(child-id: string) -> result<option<list<u8>>, string>
    (export "get-child-state" (func (param "child-id" string)
                                    (result (result (option (list u8)) (error string)))))
    ;; get-child-events: func(child-id: string) -> result<list<chain-event>, string>
    (export "get-child-events" (func (param "child-id" string)
                                     (result (result (list $chain_event_i) (error string)))))))
  (import "theater:simple/supervisor" (instance $supervisor (type $supervisor_t)))

  (type $msh_t (instance
    ;; `use types.{actor-id}`
    (alias outer $parent $actor_id (type $actor_id_o))
    (export "actor-id" (type $actor_id_i (eq $actor_id_o)))
    ;; send: func(actor-id: actor-id, msg: list<u8>) -> result<_, string>
    (export "send" (func (param "actor-id" $actor_id_i) (param "msg" (list u8))
                         (result (result (error string)))))
    ;; request: func(actor-id: actor-id, msg: list<u8>) -> result<list<u8>, string>
    (export "request" (func (param "actor-id" $actor_id_i) (param "msg" (list u8))
                            (result (result (list u8) (error string)))))))
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
  (alias export $supervisor "spawn" (func $spawn_f))
  (alias export $supervisor "resume" (func $resume_f))
  (alias export $supervisor "list-children" (func $list_children_f))
  (alias export $supervisor "stop-child" (func $stop_child_f))
  (alias export $supervisor "restart-child" (func $restart_child_f))
  (alias export $supervisor "get-child-state" (func $get_child_state_f))
  (alias export $supervisor "get-child-events" (func $get_child_events_f))
  (alias export $msh "send" (func $send_f))
  (alias export $msh "request" (func $request_f))
  ;; core: (msg-ptr, msg-len) -> ()
  (core func $log (canon lower (func $log_f) (memory (core memory $libc "memory"))))
  ;; spawn / resume core: (manifest-ptr, manifest-len, bytes-disc, bytes-ptr, bytes-len, retptr) -> ()
  ;; retptr: disc u8 @0; ok: id ptr @4, len @8; err: string ptr @4, len @8
  (core func $spawn (canon lower (func $spawn_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $resume (canon lower (func $resume_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  ;; core: (retptr) -> (); retptr: list ptr @0, len @4; each element is a string (ptr @0, len @4), 8 bytes
  (core func $list_children (canon lower (func $list_children_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  ;; stop-child / restart-child core: (id-ptr, id-len, retptr) -> (); retptr: disc u8 @0; err: ptr @4, len @8
  (core func $stop_child (canon lower (func $stop_child_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $restart_child (canon lower (func $restart_child_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  ;; core: (id-ptr, id-len, retptr) -> ()
  ;; retptr: disc u8 @0; ok: option disc u8 @4, bytes ptr @8, len @12; err: string ptr @4, len @8
  (core func $get_child_state (canon lower (func $get_child_state_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  ;; core: (id-ptr, id-len, retptr) -> ()
  ;; retptr: disc u8 @0; ok: list ptr @4, len @8; err: string ptr @4, len @8
  ;; chain-event element, 64 bytes, align 8: hash ptr @0 len @4; parent-hash disc u8 @8 ptr @12 len @16;
  ;;   event-type ptr @20 len @24; data ptr @28 len @32; timestamp u64 @40;
  ;;   description disc u8 @48 ptr @52 len @56
  (core func $get_child_events (canon lower (func $get_child_events_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  ;; send core: (id-ptr, id-len, msg-ptr, msg-len, retptr) -> (); retptr: disc u8 @0; err: ptr @4, len @8
  (core func $send (canon lower (func $send_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  ;; request core: (id-ptr, id-len, msg-ptr, msg-len, retptr) -> ()
  ;; retptr: disc u8 @0; ok: list ptr @4, len @8; err: string ptr @4, len @8
  (core func $request (canon lower (func $request_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core instance $rt (export "log" (func $log)))
  (core instance $sv
    (export "spawn" (func $spawn))
    (export "resume" (func $resume))
    (export "list-children" (func $list_children))
    (export "stop-child" (func $stop_child))
    (export "restart-child" (func $restart_child))
    (export "get-child-state" (func $get_child_state))
    (export "get-child-events" (func $get_child_events)))
  (core instance $ms
    (export "send" (func $send))
    (export "request" (func $request)))

  ;; --- the actor -------------------------------------------------------------
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "libc" "realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
    (import "rt" "log" (func $log (param i32 i32)))
    (import "sv" "spawn" (func $spawn (param i32 i32 i32 i32 i32 i32)))
    (import "sv" "resume" (func $resume (param i32 i32 i32 i32 i32 i32)))
    (import "sv" "list-children" (func $list_children (param i32)))
    (import "sv" "stop-child" (func $stop_child (param i32 i32 i32)))
    (import "sv" "restart-child" (func $restart_child (param i32 i32 i32)))
    (import "sv" "get-child-state" (func $get_child_state (param i32 i32 i32)))
    (import "sv" "get-child-events" (func $get_child_events (param i32 i32 i32)))
    (import "ms" "send" (func $send (param i32 i32 i32 i32 i32)))
    (import "ms" "request" (func $request (param i32 i32 i32 i32 i32)))

    (global $RET i32 (i32.const 1024))
    (global $IRET i32 (i32.const 1152))
    (data (i32.const 16) "parent init")     ;; 11 bytes
    (data (i32.const 32) "error: ")         ;; 7 bytes
    (data (i32.const 40) "ok")              ;; 2 bytes
    (data (i32.const 48) "none")            ;; 4 bytes
    (data (i32.const 56) "unknown")         ;; 7 bytes
    (data (i32.const 64) "error")           ;; 5 bytes
    (data (i32.const 72) "exit")            ;; 4 bytes
    (data (i32.const 80) "external")        ;; 8 bytes
    (data (i32.const 96) "-")               ;; 1 byte
    (data (i32.const 98) "/")               ;; 1 byte
    ;; wit-error-type case names (case i at 128 + 32*i) and their lengths (u32 at 448 + 4*i)
    (data (i32.const 128) "operation-timeout")
    (data (i32.const 160) "channel-closed")
    (data (i32.const 192) "shutting-down")
    (data (i32.const 224) "function-not-found")
    (data (i32.const 256) "type-mismatch")
    (data (i32.const 288) "internal")
    (data (i32.const 320) "serialization-error")
    (data (i32.const 352) "update-component-error")
    (data (i32.const 384) "paused")
    (data (i32.const 448) "\11\00\00\00" "\0e\00\00\00" "\0d\00\00\00" "\12\00\00\00" "\0d\00\00\00"
                          "\08\00\00\00" "\13\00\00\00" "\16\00\00\00" "\06\00\00\00")

    ;; alloc(len) -> ptr of a fresh heap buffer (align 1)
    (func $alloc (param $l i32) (result i32)
      (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $l)))

    ;; put(dst, src, len) -> dst + len, after copying len bytes from src to dst
    (func $put (param $d i32) (param $s i32) (param $l i32) (result i32)
      (memory.copy (local.get $d) (local.get $s) (local.get $l))
      (i32.add (local.get $d) (local.get $l)))

    ;; space(ptr, len) -> index of the first space, or len if there is none
    (func $space (param $p i32) (param $l i32) (result i32)
      (local $i i32)
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $l)))
          (br_if $done (i32.eq (i32.load8_u (i32.add (local.get $p) (local.get $i))) (i32.const 32)))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      (local.get $i))

    ;; reply(ptr, len): sets the reply slot of RET (@16..28) to some(bytes)
    (func $reply (param $p i32) (param $l i32)
      (i32.store8 offset=16 (global.get $RET) (i32.const 1))
      (i32.store offset=20 (global.get $RET) (local.get $p))
      (i32.store offset=24 (global.get $RET) (local.get $l)))

    ;; reply_error(ptr, len): replies "error: " ++ bytes
    (func $reply_error (param $p i32) (param $l i32)
      (local $b i32)
      (local.set $b (call $alloc (i32.add (i32.const 7) (local.get $l))))
      (drop (call $put (call $put (local.get $b) (i32.const 32) (i32.const 7)) (local.get $p) (local.get $l)))
      (call $reply (local.get $b) (i32.add (i32.const 7) (local.get $l))))

    ;; reply_payload_result(): IRET holds a result<string | list<u8>, string>
    ;; (disc u8 @0, ptr @4, len @8); replies the ok payload or "error: <err>"
    (func $reply_payload_result
      (if (i32.eqz (i32.load8_u (global.get $IRET)))
        (then (call $reply (i32.load offset=4 (global.get $IRET)) (i32.load offset=8 (global.get $IRET))))
        (else (call $reply_error (i32.load offset=4 (global.get $IRET)) (i32.load offset=8 (global.get $IRET))))))

    ;; reply_unit_result(): IRET holds a result<_, string> (disc u8 @0, err ptr @4, len @8);
    ;; replies "ok" or "error: <err>"
    (func $reply_unit_result
      (if (i32.eqz (i32.load8_u (global.get $IRET)))
        (then (call $reply (i32.const 40) (i32.const 2)))
        (else (call $reply_error (i32.load offset=4 (global.get $IRET)) (i32.load offset=8 (global.get $IRET))))))

    ;; join(list-ptr, count, stride, field): the strings at element + field (ptr, len) of
    ;; `count` elements `stride` bytes apart, joined with ","; returns (ptr, len)
    (func $join (param $lp i32) (param $n i32) (param $stride i32) (param $field i32) (result i32 i32)
      (local $i i32) (local $e i32) (local $total i32) (local $b i32) (local $d i32)
      ;; total = sum of lengths + separators
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (local.set $e (i32.add (i32.add (local.get $lp) (i32.mul (local.get $i) (local.get $stride)))
                                 (local.get $field)))
          (local.set $total (i32.add (local.get $total) (i32.add (i32.load offset=4 (local.get $e)) (i32.const 1))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      (if (local.get $n) (then (local.set $total (i32.sub (local.get $total) (i32.const 1)))))
      (local.set $b (call $alloc (local.get $total)))
      (local.set $d (local.get $b))
      (local.set $i (i32.const 0))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (if (local.get $i)
            (then (i32.store8 (local.get $d) (i32.const 44))           ;; ','
                  (local.set $d (i32.add (local.get $d) (i32.const 1)))))
          (local.set $e (i32.add (i32.add (local.get $lp) (i32.mul (local.get $i) (local.get $stride)))
                                 (local.get $field)))
          (local.set $d (call $put (local.get $d) (i32.load (local.get $e)) (i32.load offset=4 (local.get $e))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      (local.get $b)
      (local.get $total))

    ;; dispatch(state-disc, state-ptr, state-len, msg-ptr, msg-len) -> RET
    ;; writes RET in handle-request's layout: disc u8 @0; ok: state disc u8 @4, ptr @8, len @12;
    ;; reply disc u8 @16, ptr @20, len @24 (handle-send's result layout is the first 16 bytes).
    ;; The state is always returned unchanged.
    (func $dispatch (param $sd i32) (param $sp i32) (param $sl i32) (param $mp i32) (param $ml i32) (result i32)
      (local $op i32) (local $ap i32) (local $al i32) (local $sp2 i32) (local $bp i32) (local $bl i32)
      ;; default result: ok, state unchanged, reply none
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (local.get $sd))
      (i32.store offset=8 (global.get $RET) (local.get $sp))
      (i32.store offset=12 (global.get $RET) (local.get $sl))
      (i32.store8 offset=16 (global.get $RET) (i32.const 0))
      (if (i32.eqz (local.get $ml))
        (then (call $reply (i32.const 56) (i32.const 7)) (return (global.get $RET))))
      (local.set $op (i32.load8_u (local.get $mp)))
      (local.set $ap (i32.add (local.get $mp) (i32.const 1)))
      (local.set $al (i32.sub (local.get $ml) (i32.const 1)))
      ;; the two-argument split "<a> <b>": a = (ap, sp2), b = (bp, bl)
      (local.set $sp2 (call $space (local.get $ap) (local.get $al)))
      (if (i32.lt_u (local.get $sp2) (local.get $al))
        (then (local.set $bp (i32.add (i32.add (local.get $ap) (local.get $sp2)) (i32.const 1)))
              (local.set $bl (i32.sub (i32.sub (local.get $al) (local.get $sp2)) (i32.const 1))))
        (else (local.set $bp (i32.add (local.get $ap) (local.get $al)))
              (local.set $bl (i32.const 0))))

      ;; 'S' spawn(rest, none)
      (if (i32.eq (local.get $op) (i32.const 0x53))
        (then
          (call $spawn (local.get $ap) (local.get $al) (i32.const 0) (i32.const 0) (i32.const 0) (global.get $IRET))
          (call $reply_payload_result)
          (return (global.get $RET))))
      ;; 'I' spawn(a, some(b))
      (if (i32.eq (local.get $op) (i32.const 0x49))
        (then
          (call $spawn (local.get $ap) (local.get $sp2) (i32.const 1) (local.get $bp) (local.get $bl) (global.get $IRET))
          (call $reply_payload_result)
          (return (global.get $RET))))
      ;; 'R' resume(a, some(b))
      (if (i32.eq (local.get $op) (i32.const 0x52))
        (then
          (call $resume (local.get $ap) (local.get $sp2) (i32.const 1) (local.get $bp) (local.get $bl) (global.get $IRET))
          (call $reply_payload_result)
          (return (global.get $RET))))
      ;; 'L' list-children(), ids joined with ","
      (if (i32.eq (local.get $op) (i32.const 0x4c))
        (then
          (call $list_children (global.get $IRET))
          (call $join (i32.load (global.get $IRET)) (i32.load offset=4 (global.get $IRET)) (i32.const 8) (i32.const 0))
          (call $reply)
          (return (global.get $RET))))
      ;; 'K' stop-child(rest)
      (if (i32.eq (local.get $op) (i32.const 0x4b))
        (then
          (call $stop_child (local.get $ap) (local.get $al) (global.get $IRET))
          (call $reply_unit_result)
          (return (global.get $RET))))
      ;; 'T' restart-child(rest)
      (if (i32.eq (local.get $op) (i32.const 0x54))
        (then
          (call $restart_child (local.get $ap) (local.get $al) (global.get $IRET))
          (call $reply_unit_result)
          (return (global.get $RET))))
      ;; 'G' get-child-state(rest): state bytes, "none", or "error: <err>"
      (if (i32.eq (local.get $op) (i32.const 0x47))
        (then
          (call $get_child_state (local.get $ap) (local.get $al) (global.get $IRET))
          (if (i32.load8_u (global.get $IRET))
            (then (call $reply_error (i32.load offset=4 (global.get $IRET)) (i32.load offset=8 (global.get $IRET))))
            (else
              (if (i32.load8_u offset=4 (global.get $IRET))
                (then (call $reply (i32.load offset=8 (global.get $IRET)) (i32.load offset=12 (global.get $IRET))))
                (else (call $reply (i32.const 48) (i32.const 4))))))
          (return (global.get $RET))))
      ;; 'E' get-child-events(rest): event types joined with ",", or "error: <err>"
      (if (i32.eq (local.get $op) (i32.const 0x45))
        (then
          (call $get_child_events (local.get $ap) (local.get $al) (global.get $IRET))
          (if (i32.load8_u (global.get $IRET))
            (then (call $reply_error (i32.load offset=4 (global.get $IRET)) (i32.load offset=8 (global.get $IRET))))
            (else
              ;; chain-event elements are 64 bytes; event-type is the string at @20
              (call $join (i32.load offset=4 (global.get $IRET)) (i32.load offset=8 (global.get $IRET))
                          (i32.const 64) (i32.const 20))
              (call $reply)))
          (return (global.get $RET))))
      ;; 'Q' request(a, b)
      (if (i32.eq (local.get $op) (i32.const 0x51))
        (then
          (call $request (local.get $ap) (local.get $sp2) (local.get $bp) (local.get $bl) (global.get $IRET))
          (call $reply_payload_result)
          (return (global.get $RET))))
      ;; 'P' send(a, b)
      (if (i32.eq (local.get $op) (i32.const 0x50))
        (then
          (call $send (local.get $ap) (local.get $sp2) (local.get $bp) (local.get $bl) (global.get $IRET))
          (call $reply_unit_result)
          (return (global.get $RET))))
      ;; 'N' the notes (the state; "" if none)
      (if (i32.eq (local.get $op) (i32.const 0x4e))
        (then
          (if (local.get $sd)
            (then (call $reply (local.get $sp) (local.get $sl)))
            (else (call $reply (i32.const 0) (i32.const 0))))
          (return (global.get $RET))))
      ;; anything else
      (call $reply (i32.const 56) (i32.const 7))
      (global.get $RET))

    ;; note(state-disc, state-ptr, state-len, tag-ptr, tag-len, id-ptr, id-len,
    ;;      d1-ptr, d1-len, d2-ptr, d2-len, d3-ptr, d3-len) -> RET
    ;; new state = state ++ tag ++ ":" ++ id ++ ":" ++ d1 ++ d2 ++ d3 ++ ";" (a none state counts as "");
    ;; logs the note (bytes >= 0x80 as '?'). RET: disc u8 @0 = ok; state disc u8 @4 = some, ptr @8, len @12.
    (func $note (param $sd i32) (param $sp i32) (param $sl i32) (param $tp i32) (param $tl i32)
                (param $ip i32) (param $il i32) (param $ap i32) (param $al i32) (param $bp i32) (param $bl i32)
                (param $cp i32) (param $cl i32) (result i32)
      (local $b i32) (local $d i32) (local $n i32) (local $np i32) (local $lp i32) (local $i i32) (local $c i32)
      (if (i32.eqz (local.get $sd)) (then (local.set $sl (i32.const 0))))
      ;; note length: tag + ':' + id + ':' + details + ';'
      (local.set $n (i32.add (i32.add (i32.add (local.get $tl) (local.get $il))
                                      (i32.add (local.get $al) (local.get $bl)))
                             (i32.add (local.get $cl) (i32.const 3))))
      (local.set $b (call $alloc (i32.add (local.get $sl) (local.get $n))))
      (local.set $np (call $put (local.get $b) (local.get $sp) (local.get $sl)))
      (local.set $d (call $put (local.get $np) (local.get $tp) (local.get $tl)))
      (i32.store8 (local.get $d) (i32.const 58))                              ;; ':'
      (local.set $d (call $put (i32.add (local.get $d) (i32.const 1)) (local.get $ip) (local.get $il)))
      (i32.store8 (local.get $d) (i32.const 58))                              ;; ':'
      (local.set $d (call $put (i32.add (local.get $d) (i32.const 1)) (local.get $ap) (local.get $al)))
      (local.set $d (call $put (local.get $d) (local.get $bp) (local.get $bl)))
      (local.set $d (call $put (local.get $d) (local.get $cp) (local.get $cl)))
      (i32.store8 (local.get $d) (i32.const 59))                              ;; ';'
      ;; log a copy of the note with non-ASCII bytes replaced, so it is always valid UTF-8
      (local.set $lp (call $alloc (local.get $n)))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
          (local.set $c (i32.load8_u (i32.add (local.get $np) (local.get $i))))
          (i32.store8 (i32.add (local.get $lp) (local.get $i))
            (select (i32.const 63) (local.get $c) (i32.ge_u (local.get $c) (i32.const 0x80))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      (call $log (local.get $lp) (local.get $n))
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (i32.const 1))
      (i32.store offset=8 (global.get $RET) (local.get $b))
      (i32.store offset=12 (global.get $RET) (i32.add (local.get $sl) (local.get $n)))
      (global.get $RET))

    ;; init: func(state: option<list<u8>>, params: tuple<string>) -> result<tuple<option<list<u8>>>, string>
    ;; core params: state-disc, state-ptr, state-len, id-ptr, id-len
    ;; returns RET: disc u8 @0; ok: state disc u8 @4, ptr @8, len @12; err: string ptr @4, len @8
    (func (export "init") (param $sd i32) (param $sp i32) (param $sl i32) (param $idp i32) (param $idl i32) (result i32)
      (call $log (i32.const 16) (i32.const 11))
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (local.get $sd))
      (i32.store offset=8 (global.get $RET) (local.get $sp))
      (i32.store offset=12 (global.get $RET) (local.get $sl))
      (global.get $RET))

    ;; handle-send: func(state: option<list<u8>>, params: tuple<list<u8>>) -> result<tuple<option<list<u8>>>, string>
    ;; core params: state-disc, state-ptr, state-len, msg-ptr, msg-len
    ;; returns RET: disc u8 @0; ok: state disc u8 @4, ptr @8, len @12
    (func (export "handle-send") (param $sd i32) (param $sp i32) (param $sl i32) (param $mp i32) (param $ml i32) (result i32)
      (call $dispatch (local.get $sd) (local.get $sp) (local.get $sl) (local.get $mp) (local.get $ml)))

    ;; handle-request: func(state: option<list<u8>>, params: tuple<string, list<u8>>)
    ;;                 -> result<tuple<option<list<u8>>, tuple<option<list<u8>>>>, string>
    ;; core params: state-disc, state-ptr, state-len, request-id-ptr, request-id-len, msg-ptr, msg-len
    ;; returns RET: disc u8 @0; ok: state disc u8 @4, ptr @8, len @12; reply disc u8 @16, ptr @20, len @24
    (func (export "handle-request") (param $sd i32) (param $sp i32) (param $sl i32)
                                    (param $rp i32) (param $rl i32) (param $mp i32) (param $ml i32) (result i32)
      (call $dispatch (local.get $sd) (local.get $sp) (local.get $sl) (local.get $mp) (local.get $ml)))

    ;; handle-child-error: func(state: option<list<u8>>, params: tuple<string, wit-actor-error>)
    ;;                     -> result<tuple<option<list<u8>>>, string>
    ;; core params: state-disc, state-ptr, state-len, child-id-ptr, child-id-len,
    ;;              error-type (enum case index), data-disc, data-ptr, data-len
    ;; note: "error:<child-id>:<error-type>;" or "error:<child-id>:<error-type>/<data>;"
    ;; returns RET: disc u8 @0; ok: state disc u8 @4, ptr @8, len @12
    (func (export "handle-child-error") (param $sd i32) (param $sp i32) (param $sl i32)
                                        (param $ip i32) (param $il i32) (param $et i32)
                                        (param $dd i32) (param $dp i32) (param $dl i32) (result i32)
      (local $slash i32)
      (local.set $slash (select (i32.const 1) (i32.const 0) (local.get $dd)))
      (if (i32.eqz (local.get $dd)) (then (local.set $dl (i32.const 0))))
      (call $note (local.get $sd) (local.get $sp) (local.get $sl) (i32.const 64) (i32.const 5)
                  (local.get $ip) (local.get $il)
                  (i32.add (i32.const 128) (i32.shl (local.get $et) (i32.const 5)))     ;; case name
                  (i32.load (i32.add (i32.const 448) (i32.shl (local.get $et) (i32.const 2))))
                  (i32.const 98) (local.get $slash)                                     ;; "/" if some
                  (local.get $dp) (local.get $dl)))

    ;; handle-child-exit: func(state: option<list<u8>>, params: tuple<string, option<list<u8>>>)
    ;;                    -> result<tuple<option<list<u8>>>, string>
    ;; core params: state-disc, state-ptr, state-len, child-id-ptr, child-id-len, data-disc, data-ptr, data-len
    ;; note: "exit:<child-id>:<data>;" or "exit:<child-id>:none;"
    ;; returns RET: disc u8 @0; ok: state disc u8 @4, ptr @8, len @12
    (func (export "handle-child-exit") (param $sd i32) (param $sp i32) (param $sl i32)
                                       (param $ip i32) (param $il i32)
                                       (param $dd i32) (param $dp i32) (param $dl i32) (result i32)
      (if (i32.eqz (local.get $dd))
        (then (local.set $dp (i32.const 48)) (local.set $dl (i32.const 4))))        ;; "none"
      (call $note (local.get $sd) (local.get $sp) (local.get $sl) (i32.const 72) (i32.const 4)
                  (local.get $ip) (local.get $il)
                  (local.get $dp) (local.get $dl) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))

    ;; handle-child-external-stop: func(state: option<list<u8>>, params: tuple<string>)
    ;;                             -> result<tuple<option<list<u8>>>, string>
    ;; core params: state-disc, state-ptr, state-len, child-id-ptr, child-id-len
    ;; note: "external:<child-id>:-;"
    ;; returns RET: disc u8 @0; ok: state disc u8 @4, ptr @8, len @12
    (func (export "handle-child-external-stop") (param $sd i32) (param $sp i32) (param $sl i32)
                                                (param $ip i32) (param $il i32) (result i32)
      (call $note (local.get $sd) (local.get $sp) (local.get $sl) (i32.const 80) (i32.const 8)
                  (local.get $ip) (local.get $il)
                  (i32.const 96) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "rt" (instance $rt))
                                    (with "sv" (instance $sv)) (with "ms" (instance $ms))))

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
  (export "theater:simple/message-server-client" (instance $client))

  (func $handle_child_error (param "state" (option (list u8))) (param "params" (tuple string $wit_actor_error))
    (result (result (tuple (option (list u8))) (error string)))
    (canon lift (core func $i "handle-child-error") (memory (core memory $libc "memory"))
      (realloc (core func $libc "realloc")) (post-return (core func $libc "post"))))
  (func $handle_child_exit (param "state" (option (list u8))) (param "params" (tuple string (option (list u8))))
    (result (result (tuple (option (list u8))) (error string)))
    (canon lift (core func $i "handle-child-exit") (memory (core memory $libc "memory"))
      (realloc (core func $libc "realloc")) (post-return (core func $libc "post"))))
  (func $handle_child_external_stop (param "state" (option (list u8))) (param "params" (tuple string))
    (result (result (tuple (option (list u8))) (error string)))
    (canon lift (core func $i "handle-child-external-stop") (memory (core memory $libc "memory"))
      (realloc (core func $libc "realloc")) (post-return (core func $libc "post"))))
  ;; The exported instance goes through a small shim component, as wit-component does it: the
  ;; shim imports wit-actor-error (bound to the types import) and re-exports it, so the export
  ;; interface carries its own "wit-actor-error" and reads `use types.{wit-actor-error}` in WIT.
  ;; (Exporting the imported type directly from a bag-of-exports instance validates, but
  ;; `wasm-tools component wit` then refuses: "the type `wit-actor-error` appears more than once";
  ;; leaving it out validates too, but the interface then names a type it never declares.)
  (component $handlers_shim
    (type $et (enum "operation-timeout" "channel-closed" "shutting-down" "function-not-found"
                    "type-mismatch" "internal" "serialization-error" "update-component-error" "paused"))
    (import "import-type-wit-error-type" (type $et_i (eq $et)))
    (type $wae_t (record (field "error-type" $et_i) (field "data" (option (list u8)))))
    (import "import-type-wit-actor-error" (type $wae_i (eq $wae_t)))
    (import "handle-child-error" (func $f1 (param "state" (option (list u8))) (param "params" (tuple string $wae_i))
      (result (result (tuple (option (list u8))) (error string)))))
    (import "handle-child-exit" (func $f2 (param "state" (option (list u8))) (param "params" (tuple string (option (list u8))))
      (result (result (tuple (option (list u8))) (error string)))))
    (import "handle-child-external-stop" (func $f3 (param "state" (option (list u8))) (param "params" (tuple string))
      (result (result (tuple (option (list u8))) (error string)))))
    (export $wae "wit-actor-error" (type $wae_i))
    ;; re-exported with its type ascribed, so that it names the exported wit-actor-error
    (export "handle-child-error" (func $f1) (func (param "state" (option (list u8))) (param "params" (tuple string $wae))
      (result (result (tuple (option (list u8))) (error string)))))
    (export "handle-child-exit" (func $f2))
    (export "handle-child-external-stop" (func $f3)))
  (instance $handlers (instantiate $handlers_shim
    (with "import-type-wit-error-type" (type $wit_error_type))
    (with "import-type-wit-actor-error" (type $wit_actor_error))
    (with "handle-child-error" (func $handle_child_error))
    (with "handle-child-exit" (func $handle_child_exit))
    (with "handle-child-external-stop" (func $handle_child_external_stop))))
  (export "theater:simple/supervisor-handlers" (instance $handlers)))
