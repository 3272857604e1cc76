;; hello: the smallest Theater actor.
;;
;; World: imports theater:simple/runtime (log, shutdown)
;;        exports theater:simple/actor (init)
;;
;; init logs "Hello from a WebAssembly actor: <actor id>", asks the host to
;; shut the actor down with data "done", and returns its state unchanged.
;;
;; Memory map (shared by all the hand-written actors):
;;   16..1023    static strings (data segments)
;;   1024..1055  return area of the lifted export (RET)
;;   1152..1167  return area for lowered imports (IRET)
;;   4096..      bump heap (realloc); reset to 4096 by the post-return of every export
(component
  ;; --- imports -------------------------------------------------------------
  (type $runtime_t (instance
    ;; log: func(msg: string)
    (export "log" (func (param "msg" string)))
    ;; shutdown: func(data: option<list<u8>>) -> result<_, string>
    (export "shutdown" (func (param "data" (option (list u8))) (result (result (error string)))))))
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
  (alias export $runtime "shutdown" (func $shutdown_f))
  ;; core: (msg-ptr, msg-len) -> ()
  (core func $log (canon lower (func $log_f) (memory (core memory $libc "memory"))))
  ;; core: (data-disc, data-ptr, data-len, retptr) -> (); retptr: disc u8 @0, err string ptr @4 len @8
  (core func $shutdown (canon lower (func $shutdown_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core instance $rt (export "log" (func $log)) (export "shutdown" (func $shutdown)))

  ;; --- the actor -------------------------------------------------------------
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "libc" "realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
    (import "rt" "log" (func $log (param i32 i32)))
    (import "rt" "shutdown" (func $shutdown (param i32 i32 i32 i32)))

    (global $RET i32 (i32.const 1024))
    (global $IRET i32 (i32.const 1152))
    (data (i32.const 16) "Hello from a WebAssembly actor: ")   ;; 32 bytes
    (data (i32.const 64) "done")                               ;; 4 bytes

    ;; concat(a, a-len, b, b-len) -> ptr of a fresh heap buffer holding a ++ b
    (func $concat (param $a i32) (param $al i32) (param $b i32) (param $bl i32) (result i32)
      (local $p i32)
      (local.set $p (call $realloc (i32.const 0) (i32.const 0) (i32.const 1)
                      (i32.add (local.get $al) (local.get $bl))))
      (memory.copy (local.get $p) (local.get $a) (local.get $al))
      (memory.copy (i32.add (local.get $p) (local.get $al)) (local.get $b) (local.get $bl))
      (local.get $p))

    ;; init: func(state: option<list<u8>>, params: tuple<string>) -> result<tuple<option<list<u8>>>, string>
    ;; core params: state-disc, state-ptr, state-len, id-ptr, id-len
    ;; returns RET: disc u8 @0 (0 = ok); ok: state disc u8 @4, ptr @8, len @12
    (func (export "init") (param $sd i32) (param $sp i32) (param $sl i32) (param $idp i32) (param $idl i32) (result i32)
      (call $log (call $concat (i32.const 16) (i32.const 32) (local.get $idp) (local.get $idl))
                 (i32.add (i32.const 32) (local.get $idl)))
      ;; shutdown(some("done")); the result written at IRET is ignored
      (call $shutdown (i32.const 1) (i32.const 64) (i32.const 4) (global.get $IRET))
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (local.get $sd))
      (i32.store offset=8 (global.get $RET) (local.get $sp))
      (i32.store offset=12 (global.get $RET) (local.get $sl))
      (global.get $RET)))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "rt" (instance $rt))))

  ;; --- exports ---------------------------------------------------------------
  (func $init (param "state" (option (list u8))) (param "params" (tuple string))
    (result (result (tuple (option (list u8))) (error string)))
    (canon lift (core func $i "init") (memory (core memory $libc "memory"))
      (realloc (core func $libc "realloc")) (post-return (core func $libc "post"))))
  (instance $actor (export "init" (func $init)))
  (export "theater:simple/actor" (instance $actor)))
