;; handlers: calls each function of the timing, random, environment and filesystem handlers.
;;
;; World: imports theater:simple/{runtime (log), timing, random, environment, filesystem}
;;        exports theater:simple/actor (init), theater:simple/message-server-client (handle-request)
;;
;; A request is one opcode byte, then its arguments: integers as little-endian bytes, strings
;; as the rest of the message, several strings separated by NUL bytes. The reply says what the
;; call returned: a result as "ok" / "ok:" + value / "err:" + message, an option as "some:" +
;; value / "none"; integers and floats as their 8 little-endian bytes.
;;   o  runtime.log("") (a host call that does nothing: the bench's baseline)      -> "ok"
;;   N  now                          -> 8 bytes      S u64  sleep(ms)             -> result
;;   D  u64 deadline(ms)             -> result       B u32  random-bytes(n)       -> ok:bytes
;;   R  u64 u64 random-range         -> ok:8 bytes   F      random-float          -> ok:8 bytes
;;   U  generate-uuid                -> ok:text      g name get-var               -> some:value / none
;;   L  list-vars -> "name=value\n" for each         x name exists                -> "1" / "0"
;;   r  path read-file -> ok:bytes                   w path NUL content write-file -> result
;;   l  path list-files -> ok: + "name\n" for each   d path delete-file           -> result
;;   c  path create-dir -> result                    e path delete-dir            -> result
;;   p  path path-exists -> ok:1 / ok:0
;;   X  dir NUL program (NUL arg)* execute-command -> ok:success: + exit code (4 bytes) + stdout
;;      + NUL + stderr, or ok:error: + message, or err: + message
;;   Y  dir NUL command execute-nix-command -> as X
;;   *  u32 count, then a request: runs it count times (heap reset between runs), replies the last
;;      reply (scripts/bench.py)
;;   anything else -> "unknown"
;;
;; Memory map: 16..127 static strings; 1024..1055 handle-request's return area (RET);
;; 1088..1119 the imports' return area (IRET); 1152..1159 scratch; 4096.. bump heap, reset by
;; every export's post-return. The reply is built by appending to the heap once the host calls
;; are done: with a bump allocator, consecutive allocations are contiguous.
(component
  (type $runtime_t (instance (export "log" (func (param "msg" string)))))
  (import "theater:simple/runtime" (instance $runtime (type $runtime_t)))
  (type $timing_t (instance
    (export "now" (func (result u64)))
    (export "sleep" (func (param "duration" u64) (result (result (error string)))))
    (export "deadline" (func (param "timestamp" u64) (result (result (error string)))))))
  (import "theater:simple/timing" (instance $timing (type $timing_t)))
  (type $random_t (instance
    (export "random-bytes" (func (param "length" u32) (result (result (list u8) (error string)))))
    (export "random-range" (func (param "min" u64) (param "max" u64) (result (result u64 (error string)))))
    (export "random-float" (func (result (result f64 (error string)))))
    (export "generate-uuid" (func (result (result string (error string)))))))
  (import "theater:simple/random" (instance $random (type $random_t)))
  (type $env_t (instance
    (export "get-var" (func (param "name" string) (result (option string))))
    (export "list-vars" (func (result (list (tuple string string)))))
    (export "exists" (func (param "name" string) (result bool)))))
  (import "theater:simple/environment" (instance $env (type $env_t)))
  (type $fs_t (instance
    (type $ok (record (field "stdout" string) (field "stderr" string) (field "exit-code" s32)))
    (export "command-success" (type $ok_e (eq $ok)))
    (type $bad (record (field "message" string)))
    (export "command-error" (type $bad_e (eq $bad)))
    (type $cr (variant (case "success" $ok_e) (case "error" $bad_e)))
    (export "command-result" (type $cr_e (eq $cr)))
    (export "read-file" (func (param "path" string) (result (result (list u8) (error string)))))
    (export "write-file" (func (param "path" string) (param "content" string) (result (result (error string)))))
    (export "list-files" (func (param "path" string) (result (result (list string) (error string)))))
    (export "delete-file" (func (param "path" string) (result (result (error string)))))
    (export "create-dir" (func (param "path" string) (result (result (error string)))))
    (export "delete-dir" (func (param "path" string) (result (result (error string)))))
    (export "path-exists" (func (param "path" string) (result (result bool (error string)))))
    (export "execute-command" (func (param "dir" string) (param "command" string) (param "args" (list string))
                                    (result (result $cr_e (error string)))))
    (export "execute-nix-command" (func (param "dir" string) (param "command" string)
                                        (result (result $cr_e (error string)))))))
  (import "theater:simple/filesystem" (instance $fs (type $fs_t)))

  (core module $libc
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 4096))
    ;; realloc(old, old-size, align, size) -> ptr (a bump allocator; grows memory as needed)
    (func (export "realloc") (param $old i32) (param $old_size i32) (param $align i32) (param $size i32) (result i32)
      (local $p i32) (local $end i32)
      (local.set $p (i32.and (i32.add (global.get $bump) (i32.sub (local.get $align) (i32.const 1)))
                             (i32.sub (i32.const 0) (local.get $align))))
      (local.set $end (i32.add (local.get $p) (local.get $size)))
      (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
        (then
          (if (i32.eq (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (i32.shl (memory.size) (i32.const 16)))
                                                       (i32.const 65535)) (i32.const 16)))
                      (i32.const -1))
            (then unreachable))))
      (global.set $bump (local.get $end))
      (if (local.get $old) (then (memory.copy (local.get $p) (local.get $old) (local.get $old_size))))
      (local.get $p))
    (func (export "mark") (result i32) (global.get $bump))
    (func (export "release") (param i32) (global.set $bump (local.get 0)))
    (func (export "post") (param i32) (global.set $bump (i32.const 4096))))
  (core instance $libc (instantiate $libc))

  (alias export $runtime "log" (func $log_f))
  (alias export $timing "now" (func $now_f))
  (alias export $timing "sleep" (func $sleep_f))
  (alias export $timing "deadline" (func $deadline_f))
  (alias export $random "random-bytes" (func $rbytes_f))
  (alias export $random "random-range" (func $rrange_f))
  (alias export $random "random-float" (func $rfloat_f))
  (alias export $random "generate-uuid" (func $uuid_f))
  (alias export $env "get-var" (func $getvar_f))
  (alias export $env "list-vars" (func $listvars_f))
  (alias export $env "exists" (func $exists_f))
  (alias export $fs "read-file" (func $read_f))
  (alias export $fs "write-file" (func $write_f))
  (alias export $fs "list-files" (func $list_f))
  (alias export $fs "delete-file" (func $delfile_f))
  (alias export $fs "create-dir" (func $mkdir_f))
  (alias export $fs "delete-dir" (func $deldir_f))
  (alias export $fs "path-exists" (func $pexists_f))
  (alias export $fs "execute-command" (func $exec_f))
  (alias export $fs "execute-nix-command" (func $nix_f))
  ;; core signatures: strings are (ptr, len); results that flatten to more than one value go to
  ;; a return area whose pointer is the last parameter
  (core func $log (canon lower (func $log_f) (memory (core memory $libc "memory"))))
  (core func $now (canon lower (func $now_f)))
  (core func $sleep (canon lower (func $sleep_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $deadline (canon lower (func $deadline_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $rbytes (canon lower (func $rbytes_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $rrange (canon lower (func $rrange_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $rfloat (canon lower (func $rfloat_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $uuid (canon lower (func $uuid_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $getvar (canon lower (func $getvar_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $listvars (canon lower (func $listvars_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $exists (canon lower (func $exists_f) (memory (core memory $libc "memory"))))
  (core func $read (canon lower (func $read_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $write (canon lower (func $write_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $list (canon lower (func $list_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $delfile (canon lower (func $delfile_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $mkdir (canon lower (func $mkdir_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $deldir (canon lower (func $deldir_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $pexists (canon lower (func $pexists_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $exec (canon lower (func $exec_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $nix (canon lower (func $nix_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core instance $host
    (export "log" (func $log)) (export "now" (func $now)) (export "sleep" (func $sleep))
    (export "deadline" (func $deadline)) (export "random-bytes" (func $rbytes)) (export "random-range" (func $rrange))
    (export "random-float" (func $rfloat)) (export "generate-uuid" (func $uuid)) (export "get-var" (func $getvar))
    (export "list-vars" (func $listvars)) (export "exists" (func $exists)) (export "read-file" (func $read))
    (export "write-file" (func $write)) (export "list-files" (func $list)) (export "delete-file" (func $delfile))
    (export "create-dir" (func $mkdir)) (export "delete-dir" (func $deldir)) (export "path-exists" (func $pexists))
    (export "execute-command" (func $exec)) (export "execute-nix-command" (func $nix)))

  (core module $m
    (import "libc" "memory" (memory 1))
    (import "libc" "realloc" (func $realloc (param i32 i32 i32 i32) (result i32)))
    (import "libc" "mark" (func $mark (result i32)))
    (import "libc" "release" (func $release (param i32)))
    (import "host" "log" (func $log (param i32 i32)))
    (import "host" "now" (func $now (result i64)))
    (import "host" "sleep" (func $sleep (param i64 i32)))
    (import "host" "deadline" (func $deadline (param i64 i32)))
    (import "host" "random-bytes" (func $rbytes (param i32 i32)))
    (import "host" "random-range" (func $rrange (param i64 i64 i32)))
    (import "host" "random-float" (func $rfloat (param i32)))
    (import "host" "generate-uuid" (func $uuid (param i32)))
    (import "host" "get-var" (func $getvar (param i32 i32 i32)))
    (import "host" "list-vars" (func $listvars (param i32)))
    (import "host" "exists" (func $exists (param i32 i32) (result i32)))
    (import "host" "read-file" (func $read (param i32 i32 i32)))
    (import "host" "write-file" (func $write (param i32 i32 i32 i32 i32)))
    (import "host" "list-files" (func $list (param i32 i32 i32)))
    (import "host" "delete-file" (func $delfile (param i32 i32 i32)))
    (import "host" "create-dir" (func $mkdir (param i32 i32 i32)))
    (import "host" "delete-dir" (func $deldir (param i32 i32 i32)))
    (import "host" "path-exists" (func $pexists (param i32 i32 i32)))
    (import "host" "execute-command" (func $exec (param i32 i32 i32 i32 i32 i32 i32)))
    (import "host" "execute-nix-command" (func $nix (param i32 i32 i32 i32 i32)))

    (global $RET i32 (i32.const 1024))
    (global $IRET i32 (i32.const 1088))
    (global $SCRATCH i32 (i32.const 1152))
    (global $out (mut i32) (i32.const 0))       ;; the reply being built: start ...
    (global $out_len (mut i32) (i32.const 0))   ;; ... and length
    (data (i32.const 16) "ok")          ;; 2
    (data (i32.const 20) "err:")        ;; 4
    (data (i32.const 24) "ok:")         ;; 3
    (data (i32.const 28) "some:")       ;; 5
    (data (i32.const 36) "none")        ;; 4
    (data (i32.const 40) "success:")    ;; 8
    (data (i32.const 48) "error:")      ;; 6
    (data (i32.const 56) "unknown")     ;; 7

    ;; ---- the reply, appended piece by piece --------------------------------------------
    (func $begin
      (global.set $out_len (i32.const 0)))
    ;; room for l more bytes of the reply; the reply starts at the first piece (after whatever
    ;; the host calls allocated), and the pieces follow each other
    (func $more (param $l i32) (result i32)
      (local $d i32)
      (local.set $d (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $l)))
      (if (i32.eqz (global.get $out_len)) (then (global.set $out (local.get $d))))
      (global.set $out_len (i32.add (global.get $out_len) (local.get $l)))
      (local.get $d))
    (func $put (param $p i32) (param $l i32)
      (memory.copy (call $more (local.get $l)) (local.get $p) (local.get $l)))
    (func $put_byte (param $b i32)
      (i32.store8 (call $more (i32.const 1)) (local.get $b)))
    ;; "ok:" or "err:" by a result's discriminant at ret
    (func $tag (param $ret i32)
      (if (i32.load8_u (local.get $ret))
        (then (call $put (i32.const 20) (i32.const 4)))
        (else (call $put (i32.const 24) (i32.const 3)))))

    ;; result<_, string> and result<list<u8> | string, string>: payload (ptr @4, len @8) either way
    (func $r_unit (param $ret i32)
      (if (i32.load8_u (local.get $ret))
        (then (call $tag (local.get $ret)) (call $put (i32.load offset=4 (local.get $ret)) (i32.load offset=8 (local.get $ret))))
        (else (call $put (i32.const 16) (i32.const 2)))))
    (func $r_bytes (param $ret i32)
      (call $tag (local.get $ret))
      (call $put (i32.load offset=4 (local.get $ret)) (i32.load offset=8 (local.get $ret))))
    ;; result<u64 | f64, string>: ok 8 bytes @8; err (ptr @8, len @12)
    (func $r_u64 (param $ret i32)
      (call $tag (local.get $ret))
      (if (i32.load8_u (local.get $ret))
        (then (call $put (i32.load offset=8 (local.get $ret)) (i32.load offset=12 (local.get $ret))))
        (else (call $put (i32.add (local.get $ret) (i32.const 8)) (i32.const 8)))))
    ;; result<bool, string>: ok u8 @4; err (ptr @4, len @8)
    (func $r_bool (param $ret i32)
      (call $tag (local.get $ret))
      (if (i32.load8_u (local.get $ret))
        (then (call $put (i32.load offset=4 (local.get $ret)) (i32.load offset=8 (local.get $ret))))
        (else (call $put_byte (i32.add (i32.const 48) (i32.load8_u offset=4 (local.get $ret)))))))
    ;; result<list<string>, string>: ok (ptr @4, n @8) of (ptr, len) pairs
    (func $r_strings (param $ret i32)
      (local $p i32) (local $end i32)
      (call $tag (local.get $ret))
      (if (i32.load8_u (local.get $ret))
        (then (call $put (i32.load offset=4 (local.get $ret)) (i32.load offset=8 (local.get $ret))) (return)))
      (local.set $p (i32.load offset=4 (local.get $ret)))
      (local.set $end (i32.add (local.get $p) (i32.shl (i32.load offset=8 (local.get $ret)) (i32.const 3))))
      (block $done (loop $next
        (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
        (call $put (i32.load (local.get $p)) (i32.load offset=4 (local.get $p)))
        (call $put_byte (i32.const 10))
        (local.set $p (i32.add (local.get $p) (i32.const 8)))
        (br $next))))
    ;; result<command-result, string>: result disc @0; err (ptr @4, len @8); ok: variant disc @4;
    ;; success: stdout (ptr @8, len @12), stderr (ptr @16, len @20), exit-code @24; error: message @8, @12
    (func $r_command (param $ret i32)
      (call $tag (local.get $ret))
      (if (i32.load8_u (local.get $ret))
        (then (call $put (i32.load offset=4 (local.get $ret)) (i32.load offset=8 (local.get $ret))) (return)))
      (if (i32.load8_u offset=4 (local.get $ret))
        (then
          (call $put (i32.const 48) (i32.const 6))
          (call $put (i32.load offset=8 (local.get $ret)) (i32.load offset=12 (local.get $ret))))
        (else
          (call $put (i32.const 40) (i32.const 8))
          (call $put (i32.add (local.get $ret) (i32.const 24)) (i32.const 4))
          (call $put (i32.load offset=8 (local.get $ret)) (i32.load offset=12 (local.get $ret)))
          (call $put_byte (i32.const 0))
          (call $put (i32.load offset=16 (local.get $ret)) (i32.load offset=20 (local.get $ret))))))

    ;; the length of the bytes at p (at most l) before the first NUL
    (func $field (param $p i32) (param $l i32) (result i32)
      (local $i i32)
      (block $done (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $l)))
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
      (local.get $i))

    ;; execute-command: dir NUL program (NUL arg)*; args become a list of (ptr, len) on the heap
    (func $execute (param $ap i32) (param $al i32)
      (local $dl i32) (local $cp i32) (local $cl i32) (local $p i32) (local $end i32) (local $list i32)
      (local $n i32) (local $fl i32) (local $e i32)
      (local.set $end (i32.add (local.get $ap) (local.get $al)))
      (local.set $dl (call $field (local.get $ap) (local.get $al)))
      (local.set $cp (i32.add (local.get $ap) (i32.add (local.get $dl) (i32.const 1))))
      (if (i32.gt_u (local.get $cp) (local.get $end)) (then (local.set $cp (local.get $end))))
      (local.set $cl (call $field (local.get $cp) (i32.sub (local.get $end) (local.get $cp))))
      (local.set $p (i32.add (local.get $cp) (i32.add (local.get $cl) (i32.const 1))))
      (local.set $list (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 256)))   ;; up to 32 args
      (block $done (loop $next
        (br_if $done (i32.gt_u (local.get $p) (local.get $end)))
        (local.set $fl (call $field (local.get $p) (i32.sub (local.get $end) (local.get $p))))
        (local.set $e (i32.add (local.get $list) (i32.shl (local.get $n) (i32.const 3))))
        (i32.store (local.get $e) (local.get $p))
        (i32.store offset=4 (local.get $e) (local.get $fl))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (local.set $p (i32.add (local.get $p) (i32.add (local.get $fl) (i32.const 1))))
        (br $next)))
      (call $exec (local.get $ap) (local.get $dl) (local.get $cp) (local.get $cl) (local.get $list) (local.get $n)
                  (global.get $IRET)))

    ;; dispatch(msg-ptr, msg-len): runs one request; the reply is (out, out_len)
    (func $dispatch (param $mp i32) (param $ml i32)
      (local $op i32) (local $ap i32) (local $al i32) (local $n i32) (local $i i32) (local $mark i32) (local $x i32)
      (local $end i32) (local $p i32)
      (call $begin)
      (if (i32.eqz (local.get $ml)) (then (call $put (i32.const 56) (i32.const 7)) (return)))
      (local.set $op (i32.load8_u (local.get $mp)))
      (local.set $ap (i32.add (local.get $mp) (i32.const 1)))
      (local.set $al (i32.sub (local.get $ml) (i32.const 1)))
      (block $unknown
        (block $done
          ;; o: runtime.log("")
          (if (i32.eq (local.get $op) (i32.const 0x6f))
            (then (call $log (i32.const 16) (i32.const 0)) (call $put (i32.const 16) (i32.const 2)) (br $done)))
          ;; N: now
          (if (i32.eq (local.get $op) (i32.const 0x4e))
            (then (i64.store (global.get $SCRATCH) (call $now)) (call $put (global.get $SCRATCH) (i32.const 8)) (br $done)))
          ;; S / D: sleep / deadline
          (if (i32.eq (local.get $op) (i32.const 0x53))
            (then (call $sleep (i64.load (local.get $ap)) (global.get $IRET)) (call $r_unit (global.get $IRET)) (br $done)))
          (if (i32.eq (local.get $op) (i32.const 0x44))
            (then (call $deadline (i64.load (local.get $ap)) (global.get $IRET)) (call $r_unit (global.get $IRET)) (br $done)))
          ;; B R F U: random
          (if (i32.eq (local.get $op) (i32.const 0x42))
            (then (call $rbytes (i32.load (local.get $ap)) (global.get $IRET)) (call $r_bytes (global.get $IRET)) (br $done)))
          (if (i32.eq (local.get $op) (i32.const 0x52))
            (then (call $rrange (i64.load (local.get $ap)) (i64.load offset=8 (local.get $ap)) (global.get $IRET))
                  (call $r_u64 (global.get $IRET)) (br $done)))
          (if (i32.eq (local.get $op) (i32.const 0x46))
            (then (call $rfloat (global.get $IRET)) (call $r_u64 (global.get $IRET)) (br $done)))
          (if (i32.eq (local.get $op) (i32.const 0x55))
            (then (call $uuid (global.get $IRET)) (call $r_bytes (global.get $IRET)) (br $done)))
          ;; g L x: environment
          (if (i32.eq (local.get $op) (i32.const 0x67))
            (then
              (call $getvar (local.get $ap) (local.get $al) (global.get $IRET))
              (if (i32.load8_u (global.get $IRET))
                (then (call $put (i32.const 28) (i32.const 5))
                      (call $put (i32.load offset=4 (global.get $IRET)) (i32.load offset=8 (global.get $IRET))))
                (else (call $put (i32.const 36) (i32.const 4))))
              (br $done)))
          (if (i32.eq (local.get $op) (i32.const 0x4c))
            (then
              (call $listvars (global.get $IRET))
              (local.set $p (i32.load (global.get $IRET)))
              (local.set $end (i32.add (local.get $p) (i32.shl (i32.load offset=4 (global.get $IRET)) (i32.const 4))))
              (block $vars_done (loop $var
                (br_if $vars_done (i32.ge_u (local.get $p) (local.get $end)))
                (call $put (i32.load (local.get $p)) (i32.load offset=4 (local.get $p)))
                (call $put_byte (i32.const 61))
                (call $put (i32.load offset=8 (local.get $p)) (i32.load offset=12 (local.get $p)))
                (call $put_byte (i32.const 10))
                (local.set $p (i32.add (local.get $p) (i32.const 16)))
                (br $var)))
              (br $done)))
          (if (i32.eq (local.get $op) (i32.const 0x78))
            (then (call $put_byte (i32.add (i32.const 48) (call $exists (local.get $ap) (local.get $al)))) (br $done)))
          ;; r w l d c e p X Y: filesystem
          (if (i32.eq (local.get $op) (i32.const 0x72))
            (then (call $read (local.get $ap) (local.get $al) (global.get $IRET)) (call $r_bytes (global.get $IRET)) (br $done)))
          (if (i32.eq (local.get $op) (i32.const 0x77))
            (then
              (local.set $x (call $field (local.get $ap) (local.get $al)))
              (local.set $n (select (i32.sub (i32.sub (local.get $al) (local.get $x)) (i32.const 1)) (i32.const 0)
                                    (i32.lt_u (local.get $x) (local.get $al))))
              (call $write (local.get $ap) (local.get $x) (i32.add (i32.add (local.get $ap) (local.get $x)) (i32.const 1))
                           (local.get $n) (global.get $IRET))
              (call $r_unit (global.get $IRET))
              (br $done)))
          (if (i32.eq (local.get $op) (i32.const 0x6c))
            (then (call $list (local.get $ap) (local.get $al) (global.get $IRET)) (call $r_strings (global.get $IRET)) (br $done)))
          (if (i32.eq (local.get $op) (i32.const 0x64))
            (then (call $delfile (local.get $ap) (local.get $al) (global.get $IRET)) (call $r_unit (global.get $IRET)) (br $done)))
          (if (i32.eq (local.get $op) (i32.const 0x63))
            (then (call $mkdir (local.get $ap) (local.get $al) (global.get $IRET)) (call $r_unit (global.get $IRET)) (br $done)))
          (if (i32.eq (local.get $op) (i32.const 0x65))
            (then (call $deldir (local.get $ap) (local.get $al) (global.get $IRET)) (call $r_unit (global.get $IRET)) (br $done)))
          (if (i32.eq (local.get $op) (i32.const 0x70))
            (then (call $pexists (local.get $ap) (local.get $al) (global.get $IRET)) (call $r_bool (global.get $IRET)) (br $done)))
          (if (i32.eq (local.get $op) (i32.const 0x58))
            (then (call $execute (local.get $ap) (local.get $al)) (call $r_command (global.get $IRET)) (br $done)))
          (if (i32.eq (local.get $op) (i32.const 0x59))
            (then
              (local.set $x (call $field (local.get $ap) (local.get $al)))
              (local.set $n (select (i32.sub (i32.sub (local.get $al) (local.get $x)) (i32.const 1)) (i32.const 0)
                                    (i32.lt_u (local.get $x) (local.get $al))))
              (call $nix (local.get $ap) (local.get $x) (i32.add (i32.add (local.get $ap) (local.get $x)) (i32.const 1))
                         (local.get $n) (global.get $IRET))
              (call $r_command (global.get $IRET))
              (br $done)))
          ;; *: repeat a request
          (if (i32.eq (local.get $op) (i32.const 0x2a))
            (then
              (local.set $n (i32.load (local.get $ap)))
              (local.set $mark (call $mark))
              (block $reps_done (loop $rep
                (br_if $reps_done (i32.ge_u (local.get $i) (local.get $n)))
                (call $release (local.get $mark))
                (call $dispatch (i32.add (local.get $ap) (i32.const 4)) (i32.sub (local.get $al) (i32.const 4)))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br $rep)))
              (return)))
          (br $unknown))
        (return))
      (call $put (i32.const 56) (i32.const 7)))

    ;; init: (state-disc, state-ptr, state-len, id-ptr, id-len) -> RET: ok, the state as it was
    (func (export "init") (param $sd i32) (param $sp i32) (param $sl i32) (param $ip i32) (param $il i32) (result i32)
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (local.get $sd))
      (i32.store offset=8 (global.get $RET) (local.get $sp))
      (i32.store offset=12 (global.get $RET) (local.get $sl))
      (global.get $RET))

    ;; handle-request: (state-disc, state-ptr, state-len, id-ptr, id-len, msg-ptr, msg-len) -> RET:
    ;; disc u8 @0; state disc u8 @4, ptr @8, len @12; reply disc u8 @16, ptr @20, len @24
    (func (export "handle-request") (param $sd i32) (param $sp i32) (param $sl i32) (param $rp i32) (param $rl i32)
                                    (param $mp i32) (param $ml i32) (result i32)
      (call $dispatch (local.get $mp) (local.get $ml))
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (local.get $sd))
      (i32.store offset=8 (global.get $RET) (local.get $sp))
      (i32.store offset=12 (global.get $RET) (local.get $sl))
      (i32.store8 offset=16 (global.get $RET) (i32.const 1))
      (i32.store offset=20 (global.get $RET) (global.get $out))
      (i32.store offset=24 (global.get $RET) (global.get $out_len))
      (global.get $RET)))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "host" (instance $host))))

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
