;; bad_import: imports theater:simple/supervisor although its manifest grants only
;; the runtime handler, so the host must refuse to start it. If it were linked,
;; init would just return ok with the state unchanged (spawn is never called).
;;
;; World: imports theater:simple/runtime (log)
;;                theater:simple/supervisor (spawn)
;;        exports theater:simple/actor (init)
;;
;; Memory map:
;;   1024..1055  return area of the lifted export (RET)
;;   4096..      bump heap (realloc); reset to 4096 by the post-return of every export
(component
  ;; --- imports -------------------------------------------------------------
  (type $runtime_t (instance
    ;; log: func(msg: string)
    (export "log" (func (param "msg" string)))))
  (import "theater:simple/runtime" (instance $runtime (type $runtime_t)))
  (type $supervisor_t (instance
    ;; spawn: func(manifest: string, init-bytes: option<list<u8>>) -> result<string, string>
    (export "spawn" (func (param "manifest" string) (param "init-bytes" (option (list u8)))
                          (result (result string (error string)))))))
  (import "theater:simple/supervisor" (instance $supervisor (type $supervisor_t)))

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
  ;; core: (msg-ptr, msg-len) -> ()
  (core func $log (canon lower (func $log_f) (memory (core memory $libc "memory"))))
  ;; core: (manifest-ptr, manifest-len, init-disc, init-ptr, init-len, retptr) -> ()
  ;; retptr: disc u8 @0; ok/err: string ptr @4, len @8
  (core func $spawn (canon lower (func $spawn_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core instance $rt (export "log" (func $log)))
  (core instance $sup (export "spawn" (func $spawn)))

  ;; --- the actor -------------------------------------------------------------
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "rt" "log" (func $log (param i32 i32)))
    (import "sup" "spawn" (func $spawn (param i32 i32 i32 i32 i32 i32)))

    (global $RET i32 (i32.const 1024))

    ;; init: func(state: option<list<u8>>, params: tuple<string>) -> result<tuple<option<list<u8>>>, string>
    ;; core params: state-disc, state-ptr, state-len, id-ptr, id-len
    ;; returns RET: disc u8 @0 (0 = ok); ok: state disc u8 @4, ptr @8, len @12
    (func (export "init") (param $sd i32) (param $sp i32) (param $sl i32) (param $idp i32) (param $idl i32) (result i32)
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (local.get $sd))
      (i32.store offset=8 (global.get $RET) (local.get $sp))
      (i32.store offset=12 (global.get $RET) (local.get $sl))
      (global.get $RET)))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "rt" (instance $rt)) (with "sup" (instance $sup))))

  ;; --- exports ---------------------------------------------------------------
  (func $init (param "state" (option (list u8))) (param "params" (tuple string))
    (result (result (tuple (option (list u8))) (error string)))
    (canon lift (core func $i "init") (memory (core memory $libc "memory"))
      (realloc (core func $libc "realloc")) (post-return (core func $libc "post"))))
  (instance $actor (export "init" (func $init)))
  (export "theater:simple/actor" (instance $actor)))
