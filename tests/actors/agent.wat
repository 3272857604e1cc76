;; agent: a test actor that makes HTTP requests and uses the content store on request.
;;
;; World: imports theater:simple/http-client (send-http)
;;                theater:simple/store (all fourteen functions)
;;        exports theater:simple/actor (init)
;;                theater:simple/message-server-client (handle-request)
;;
;; init: keeps the state. handle-request(rid, msg): msg = op byte ++ fields, each field a u32
;; (little-endian) length and that many bytes. The reply starts with 'O' (ok), 'N' (ok, none)
;; or 'E' (err, then the error text); u32/u64 numbers in replies are little-endian.
;;   H  method, uri[, body]  send-http({method, uri, headers: [("x-agent", "agent")], body})
;;        -> 'O' status:u16 nheaders:u32 (name-len:u32 name value-len:u32 value)* has-body:u8 body
;;   n                        new()                              -> 'O' id
;;   s  id, content           store                              -> 'O' hash
;;   g  id, hash              get                                -> 'O' content
;;   e  id, hash              exists                             -> 'O' 0|1
;;   l  id, label, hash       label                              -> 'O'
;;   b  id, label             get-by-label                       -> 'O' hash | 'N'
;;   r  id, label             remove-label                       -> 'O'
;;   f  id, label, hash       remove-from-label                  -> 'O'
;;   a  id, label, content    store-at-label                     -> 'O' hash
;;   c  id, label, content    replace-content-at-label           -> 'O' hash
;;   p  id, label, hash       replace-at-label                   -> 'O'
;;   L  id                    list-labels                        -> 'O' (len:u32 label)*
;;   C  id                    list-all-content                   -> 'O' (len:u32 hash)*
;;   z  id                    calculate-total-size               -> 'O' size:u64
;;   other: 'E' "unknown"
;; The state is kept as it is.
;;
;; Memory map:
;;   16..31      "unknown"; 32..39 "x-agent"; 40..44 "agent"
;;   512..527    the request's header list: one (name ptr, len, value ptr, len)
;;   1024..1055  return area of the lifted exports (RET)
;;   1152..1183  return area for lowered imports (IRET, 8-aligned)
;;   1280..1311  the message's fields: (ptr, len) each, up to 4 (FIELDS)
;;   4096..      bump heap (realloc), reset by the post-return of every export; the reply is
;;               written at the top of the heap once the imports have returned
(component $agent
  ;; --- imports -------------------------------------------------------------
  (type $http_t (instance
    ;; record http-request { method: string, uri: string, headers: list<tuple<string, string>>, body: option<bytes> }
    (type $req (record (field "method" string) (field "uri" string)
                       (field "headers" (list (tuple string string))) (field "body" (option (list u8)))))
    (export "http-request" (type $req_e (eq $req)))
    ;; record http-response { status: u16, headers: list<tuple<string, string>>, body: option<bytes> }
    (type $resp (record (field "status" u16) (field "headers" (list (tuple string string)))
                        (field "body" (option (list u8)))))
    (export "http-response" (type $resp_e (eq $resp)))
    ;; send-http: func(req: http-request) -> result<http-response, string>
    (export "send-http" (func (param "req" $req_e) (result (result $resp_e (error string)))))))
  (import "theater:simple/http-client" (instance $http (type $http_t)))

  (type $store_t (instance
    ;; record content-ref { hash: string }
    (type $ref (record (field "hash" string)))
    (export "content-ref" (type $ref_e (eq $ref)))
    (export "new" (func (result (result string (error string)))))
    (export "store" (func (param "store-id" string) (param "content" (list u8))
                          (result (result $ref_e (error string)))))
    (export "get" (func (param "store-id" string) (param "content-ref" $ref_e)
                        (result (result (list u8) (error string)))))
    (export "exists" (func (param "store-id" string) (param "content-ref" $ref_e)
                           (result (result bool (error string)))))
    (export "label" (func (param "store-id" string) (param "label" string) (param "content-ref" $ref_e)
                          (result (result (error string)))))
    (export "get-by-label" (func (param "store-id" string) (param "label" string)
                                 (result (result (option $ref_e) (error string)))))
    (export "remove-label" (func (param "store-id" string) (param "label" string)
                                 (result (result (error string)))))
    (export "remove-from-label" (func (param "store-id" string) (param "label" string) (param "content-ref" $ref_e)
                                      (result (result (error string)))))
    (export "store-at-label" (func (param "store-id" string) (param "label" string) (param "content" (list u8))
                                   (result (result $ref_e (error string)))))
    (export "replace-content-at-label" (func (param "store-id" string) (param "label" string)
                                             (param "content" (list u8)) (result (result $ref_e (error string)))))
    (export "replace-at-label" (func (param "store-id" string) (param "label" string) (param "content-ref" $ref_e)
                                     (result (result (error string)))))
    (export "list-labels" (func (param "store-id" string) (result (result (list string) (error string)))))
    (export "list-all-content" (func (param "store-id" string) (result (result (list $ref_e) (error string)))))
    (export "calculate-total-size" (func (param "store-id" string) (result (result u64 (error string)))))))
  (import "theater:simple/store" (instance $store (type $store_t)))

  ;; --- libc: memory, bump allocator, post-return reset ----------------------
  (core module $libc
    (memory (export "memory") 1)
    (global $bump (export "bump") (mut i32) (i32.const 4096))
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
    (func (export "post") (param i32)
      (global.set $bump (i32.const 4096))))
  (core instance $libc (instantiate $libc))

  ;; --- lowered imports -------------------------------------------------------
  (alias export $http "send-http" (func $send_http_f))
  ;; core: (method p l, uri p l, headers p l, body disc p l, retptr) -> ()
  ;; retptr: disc u8 @0; ok: status u16 @4, headers ptr @8 len @12, body disc u8 @16 ptr @20 len @24;
  ;;         err: ptr @4, len @8
  (core func $send_http (canon lower (func $send_http_f)
    (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core instance $hc (export "send-http" (func $send_http)))

  (alias export $store "new" (func $new_f))
  (alias export $store "store" (func $store_f))
  (alias export $store "get" (func $get_f))
  (alias export $store "exists" (func $exists_f))
  (alias export $store "label" (func $label_f))
  (alias export $store "get-by-label" (func $get_by_label_f))
  (alias export $store "remove-label" (func $remove_label_f))
  (alias export $store "remove-from-label" (func $remove_from_label_f))
  (alias export $store "store-at-label" (func $store_at_label_f))
  (alias export $store "replace-content-at-label" (func $replace_content_at_label_f))
  (alias export $store "replace-at-label" (func $replace_at_label_f))
  (alias export $store "list-labels" (func $list_labels_f))
  (alias export $store "list-all-content" (func $list_all_content_f))
  (alias export $store "calculate-total-size" (func $total_size_f))
  ;; Every store function's core form: its strings and byte lists as (ptr, len) pairs, then
  ;; retptr. retptr: disc u8 @0, the ok payload @4 (@8 for u64), err string @4/@8 (@8/@12 for u64)
  (core func $new (canon lower (func $new_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $store (canon lower (func $store_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $get (canon lower (func $get_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $exists (canon lower (func $exists_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $label (canon lower (func $label_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $get_by_label (canon lower (func $get_by_label_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $remove_label (canon lower (func $remove_label_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $remove_from_label (canon lower (func $remove_from_label_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $store_at_label (canon lower (func $store_at_label_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $replace_content_at_label (canon lower (func $replace_content_at_label_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $replace_at_label (canon lower (func $replace_at_label_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $list_labels (canon lower (func $list_labels_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $list_all_content (canon lower (func $list_all_content_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core func $total_size (canon lower (func $total_size_f) (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (core instance $st
    (export "new" (func $new)) (export "store" (func $store)) (export "get" (func $get))
    (export "exists" (func $exists)) (export "label" (func $label)) (export "get-by-label" (func $get_by_label))
    (export "remove-label" (func $remove_label)) (export "remove-from-label" (func $remove_from_label))
    (export "store-at-label" (func $store_at_label))
    (export "replace-content-at-label" (func $replace_content_at_label))
    (export "replace-at-label" (func $replace_at_label)) (export "list-labels" (func $list_labels))
    (export "list-all-content" (func $list_all_content)) (export "calculate-total-size" (func $total_size)))

  ;; --- the actor -------------------------------------------------------------
  (core module $m
    (import "libc" "memory" (memory 1))
    (import "libc" "bump" (global $bump (mut i32)))
    (import "http" "send-http" (func $send_http (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
    (import "store" "new" (func $new (param i32)))
    (import "store" "store" (func $store (param i32 i32 i32 i32 i32)))
    (import "store" "get" (func $get (param i32 i32 i32 i32 i32)))
    (import "store" "exists" (func $exists (param i32 i32 i32 i32 i32)))
    (import "store" "label" (func $label (param i32 i32 i32 i32 i32 i32 i32)))
    (import "store" "get-by-label" (func $get_by_label (param i32 i32 i32 i32 i32)))
    (import "store" "remove-label" (func $remove_label (param i32 i32 i32 i32 i32)))
    (import "store" "remove-from-label" (func $remove_from_label (param i32 i32 i32 i32 i32 i32 i32)))
    (import "store" "store-at-label" (func $store_at_label (param i32 i32 i32 i32 i32 i32 i32)))
    (import "store" "replace-content-at-label" (func $replace_content_at_label (param i32 i32 i32 i32 i32 i32 i32)))
    (import "store" "replace-at-label" (func $replace_at_label (param i32 i32 i32 i32 i32 i32 i32)))
    (import "store" "list-labels" (func $list_labels (param i32 i32 i32)))
    (import "store" "list-all-content" (func $list_all_content (param i32 i32 i32)))
    (import "store" "calculate-total-size" (func $total_size (param i32 i32 i32)))
    (data (i32.const 16) "unknown")
    (data (i32.const 32) "x-agent")
    (data (i32.const 40) "agent")
    (global $RET i32 (i32.const 1024))
    (global $IRET i32 (i32.const 1152))
    (global $FIELDS i32 (i32.const 1280))
    (global $out (mut i32) (i32.const 0))      ;; the reply: start ...
    (global $olen (mut i32) (i32.const 0))     ;; ... and length so far
    (global $nf (mut i32) (i32.const 0))       ;; fields in the message

    ;; --- the message's fields ---
    (func $parse (param $p i32) (param $end i32)
      (local $len i32)
      (global.set $nf (i32.const 0))
      (block $done
        (loop $next
          (br_if $done (i32.or (i32.ge_u (global.get $nf) (i32.const 4))
                               (i32.gt_u (i32.add (local.get $p) (i32.const 4)) (local.get $end))))
          (local.set $len (i32.load align=1 (local.get $p)))
          (local.set $p (i32.add (local.get $p) (i32.const 4)))
          (i32.store (i32.add (global.get $FIELDS) (i32.shl (global.get $nf) (i32.const 3))) (local.get $p))
          (i32.store offset=4 (i32.add (global.get $FIELDS) (i32.shl (global.get $nf) (i32.const 3))) (local.get $len))
          (local.set $p (i32.add (local.get $p) (local.get $len)))
          (global.set $nf (i32.add (global.get $nf) (i32.const 1)))
          (br $next))))
    (func $fp (param $i i32) (result i32)
      (i32.load (i32.add (global.get $FIELDS) (i32.shl (local.get $i) (i32.const 3)))))
    (func $fl (param $i i32) (result i32)
      (i32.load offset=4 (i32.add (global.get $FIELDS) (i32.shl (local.get $i) (i32.const 3)))))

    ;; --- the reply, written at the top of the heap ---
    (func $begin (param $tag i32)
      (global.set $out (global.get $bump))
      (global.set $olen (i32.const 0))
      (call $byte (local.get $tag)))
    (func $room (param $n i32)
      (local $end i32) (local $have i32)
      (local.set $end (i32.add (i32.add (global.get $out) (global.get $olen)) (local.get $n)))
      (local.set $have (i32.shl (memory.size) (i32.const 16)))
      (if (i32.gt_u (local.get $end) (local.get $have))
        (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end) (local.get $have))
                                                           (i32.const 16)) (i32.const 1)))
                          (i32.const -1)) (then unreachable)))))
    (func $byte (param $b i32)
      (call $room (i32.const 1))
      (i32.store8 (i32.add (global.get $out) (global.get $olen)) (local.get $b))
      (global.set $olen (i32.add (global.get $olen) (i32.const 1))))
    (func $u32 (param $v i32)
      (call $room (i32.const 4))
      (i32.store align=1 (i32.add (global.get $out) (global.get $olen)) (local.get $v))
      (global.set $olen (i32.add (global.get $olen) (i32.const 4))))
    (func $bytes (param $p i32) (param $n i32)
      (call $room (local.get $n))
      (memory.copy (i32.add (global.get $out) (global.get $olen)) (local.get $p) (local.get $n))
      (global.set $olen (i32.add (global.get $olen) (local.get $n))))
    (func $counted (param $p i32) (param $n i32)
      (call $u32 (local.get $n))
      (call $bytes (local.get $p) (local.get $n)))
    ;; the import's result at IRET: err -> 'E' text (at $at), else 'O' and true
    (func $ok (param $at i32) (result i32)
      (if (i32.load8_u (global.get $IRET))
        (then
          (call $begin (i32.const 69))
          (call $bytes (i32.load (i32.add (global.get $IRET) (local.get $at)))
                       (i32.load offset=4 (i32.add (global.get $IRET) (local.get $at))))
          (return (i32.const 0))))
      (call $begin (i32.const 79))
      (i32.const 1))
    ;; ok payload at IRET+4 as (ptr, len): the bytes
    (func $ok_bytes
      (if (call $ok (i32.const 4))
        (then (call $bytes (i32.load offset=4 (global.get $IRET)) (i32.load offset=8 (global.get $IRET))))))
    ;; ok payload at IRET+4 as a list of (ptr, len): each counted
    (func $ok_list
      (local $p i32) (local $end i32)
      (if (call $ok (i32.const 4))
        (then
          (local.set $p (i32.load offset=4 (global.get $IRET)))
          (local.set $end (i32.add (local.get $p) (i32.shl (i32.load offset=8 (global.get $IRET)) (i32.const 3))))
          (block $done
            (loop $next
              (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
              (call $counted (i32.load (local.get $p)) (i32.load offset=4 (local.get $p)))
              (local.set $p (i32.add (local.get $p) (i32.const 8)))
              (br $next))))))

    ;; --- the operations ---
    (func $http
      (local $h i32) (local $end i32)
      ;; the one header the actor sends itself
      (i32.store (i32.const 512) (i32.const 32))
      (i32.store (i32.const 516) (i32.const 7))
      (i32.store (i32.const 520) (i32.const 40))
      (i32.store (i32.const 524) (i32.const 5))
      (call $send_http (call $fp (i32.const 0)) (call $fl (i32.const 0)) (call $fp (i32.const 1)) (call $fl (i32.const 1))
                       (i32.const 512) (i32.const 1)
                       (i32.gt_u (global.get $nf) (i32.const 2)) (call $fp (i32.const 2)) (call $fl (i32.const 2))
                       (global.get $IRET))
      (if (i32.eqz (call $ok (i32.const 4))) (then (return)))
      (call $byte (i32.load8_u offset=4 (global.get $IRET)))
      (call $byte (i32.load8_u offset=5 (global.get $IRET)))
      (call $u32 (i32.load offset=12 (global.get $IRET)))
      (local.set $h (i32.load offset=8 (global.get $IRET)))
      (local.set $end (i32.add (local.get $h) (i32.shl (i32.load offset=12 (global.get $IRET)) (i32.const 4))))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $h) (local.get $end)))
          (call $counted (i32.load (local.get $h)) (i32.load offset=4 (local.get $h)))
          (call $counted (i32.load offset=8 (local.get $h)) (i32.load offset=12 (local.get $h)))
          (local.set $h (i32.add (local.get $h) (i32.const 16)))
          (br $next)))
      (call $byte (i32.load8_u offset=16 (global.get $IRET)))
      (if (i32.load8_u offset=16 (global.get $IRET))
        (then (call $bytes (i32.load offset=20 (global.get $IRET)) (i32.load offset=24 (global.get $IRET))))))

    (func $dispatch (param $op i32)
      (local $f0p i32) (local $f0l i32) (local $f1p i32) (local $f1l i32) (local $f2p i32) (local $f2l i32)
      (local.set $f0p (call $fp (i32.const 0))) (local.set $f0l (call $fl (i32.const 0)))
      (local.set $f1p (call $fp (i32.const 1))) (local.set $f1l (call $fl (i32.const 1)))
      (local.set $f2p (call $fp (i32.const 2))) (local.set $f2l (call $fl (i32.const 2)))
      (if (i32.eq (local.get $op) (i32.const 72))      ;; H
        (then (call $http) (return)))
      (if (i32.eq (local.get $op) (i32.const 110))     ;; n
        (then (call $new (global.get $IRET)) (call $ok_bytes) (return)))
      (if (i32.eq (local.get $op) (i32.const 115))     ;; s
        (then (call $store (local.get $f0p) (local.get $f0l) (local.get $f1p) (local.get $f1l) (global.get $IRET))
              (call $ok_bytes) (return)))
      (if (i32.eq (local.get $op) (i32.const 103))     ;; g
        (then (call $get (local.get $f0p) (local.get $f0l) (local.get $f1p) (local.get $f1l) (global.get $IRET))
              (call $ok_bytes) (return)))
      (if (i32.eq (local.get $op) (i32.const 101))     ;; e
        (then (call $exists (local.get $f0p) (local.get $f0l) (local.get $f1p) (local.get $f1l) (global.get $IRET))
              (if (call $ok (i32.const 4)) (then (call $byte (i32.load8_u offset=4 (global.get $IRET)))))
              (return)))
      (if (i32.eq (local.get $op) (i32.const 108))     ;; l
        (then (call $label (local.get $f0p) (local.get $f0l) (local.get $f1p) (local.get $f1l)
                           (local.get $f2p) (local.get $f2l) (global.get $IRET))
              (drop (call $ok (i32.const 4))) (return)))
      (if (i32.eq (local.get $op) (i32.const 98))      ;; b
        (then (call $get_by_label (local.get $f0p) (local.get $f0l) (local.get $f1p) (local.get $f1l) (global.get $IRET))
              (if (call $ok (i32.const 4))
                (then (if (i32.load8_u offset=4 (global.get $IRET))
                        (then (call $bytes (i32.load offset=8 (global.get $IRET)) (i32.load offset=12 (global.get $IRET))))
                        (else (call $begin (i32.const 78))))))
              (return)))
      (if (i32.eq (local.get $op) (i32.const 114))     ;; r
        (then (call $remove_label (local.get $f0p) (local.get $f0l) (local.get $f1p) (local.get $f1l) (global.get $IRET))
              (drop (call $ok (i32.const 4))) (return)))
      (if (i32.eq (local.get $op) (i32.const 102))     ;; f
        (then (call $remove_from_label (local.get $f0p) (local.get $f0l) (local.get $f1p) (local.get $f1l)
                                       (local.get $f2p) (local.get $f2l) (global.get $IRET))
              (drop (call $ok (i32.const 4))) (return)))
      (if (i32.eq (local.get $op) (i32.const 97))      ;; a
        (then (call $store_at_label (local.get $f0p) (local.get $f0l) (local.get $f1p) (local.get $f1l)
                                    (local.get $f2p) (local.get $f2l) (global.get $IRET))
              (call $ok_bytes) (return)))
      (if (i32.eq (local.get $op) (i32.const 99))      ;; c
        (then (call $replace_content_at_label (local.get $f0p) (local.get $f0l) (local.get $f1p) (local.get $f1l)
                                              (local.get $f2p) (local.get $f2l) (global.get $IRET))
              (call $ok_bytes) (return)))
      (if (i32.eq (local.get $op) (i32.const 112))     ;; p
        (then (call $replace_at_label (local.get $f0p) (local.get $f0l) (local.get $f1p) (local.get $f1l)
                                      (local.get $f2p) (local.get $f2l) (global.get $IRET))
              (drop (call $ok (i32.const 4))) (return)))
      (if (i32.eq (local.get $op) (i32.const 76))      ;; L
        (then (call $list_labels (local.get $f0p) (local.get $f0l) (global.get $IRET)) (call $ok_list) (return)))
      (if (i32.eq (local.get $op) (i32.const 67))      ;; C
        (then (call $list_all_content (local.get $f0p) (local.get $f0l) (global.get $IRET)) (call $ok_list) (return)))
      (if (i32.eq (local.get $op) (i32.const 122))     ;; z: result<u64, string>: payload @8
        (then (call $total_size (local.get $f0p) (local.get $f0l) (global.get $IRET))
              (if (call $ok (i32.const 8))
                (then (call $u32 (i32.load offset=8 (global.get $IRET)))
                      (call $u32 (i32.load offset=12 (global.get $IRET)))))
              (return)))
      (call $begin (i32.const 69))
      (call $bytes (i32.const 16) (i32.const 7)))

    ;; init: keeps the state
    (func (export "init") (param $sd i32) (param $sp i32) (param $sl i32) (param $idp i32) (param $idl i32) (result i32)
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (local.get $sd))
      (i32.store offset=8 (global.get $RET) (local.get $sp))
      (i32.store offset=12 (global.get $RET) (local.get $sl))
      (global.get $RET))
    ;; handle-request: the reply as above, state kept
    (func (export "handle-request") (param $sd i32) (param $sp i32) (param $sl i32)
                                    (param $rp i32) (param $rl i32) (param $mp i32) (param $ml i32) (result i32)
      (call $parse (i32.add (local.get $mp) (i32.const 1)) (i32.add (local.get $mp) (local.get $ml)))
      (call $dispatch (if (result i32) (local.get $ml) (then (i32.load8_u (local.get $mp))) (else (i32.const 0))))
      (global.set $bump (i32.add (global.get $out) (global.get $olen)))
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (local.get $sd))
      (i32.store offset=8 (global.get $RET) (local.get $sp))
      (i32.store offset=12 (global.get $RET) (local.get $sl))
      (i32.store8 offset=16 (global.get $RET) (i32.const 1))
      (i32.store offset=20 (global.get $RET) (global.get $out))
      (i32.store offset=24 (global.get $RET) (global.get $olen))
      (global.get $RET)))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "http" (instance $hc))
                                    (with "store" (instance $st))))

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
