;; sockets: a component that tries to reach the network through WASI 0.2 sockets.
;;
;; World: imports wasi:sockets/{network,instance-network,tcp,tcp-create-socket,udp,
;;                udp-create-socket,ip-name-lookup}@0.2.0 (only what it uses),
;;                theater:simple/http-types (an interface of types only: it needs no grant)
;;        exports theater:simple/actor (init)
;;
;; init(state): state = the TCP port (u16, little-endian) of a listener on 127.0.0.1.
;;   1. create-tcp-socket(ipv4); if that succeeds, start-connect(socket, instance-network(),
;;      127.0.0.1:port)
;;   2. create-udp-socket(ipv4)
;;   3. resolve-addresses(instance-network(), "localhost")
;;   and returns as its new state 8 bytes: for each of create-tcp, start-connect, create-udp,
;;   resolve: (0 = ok, 1 = err, 255 = not tried) then the error-code's case number (0 if ok).
;;   error-code cases: 1 = access-denied, 2 = not-supported, 20 = permanent-resolver-failure.
(component
  (type $net_t (instance
    (export "network" (type (sub resource)))
    (type $v4a (tuple u8 u8 u8 u8))
    (export "ipv4-address" (type $v4 (eq $v4a)))
    (type $v4sa (record (field "port" u16) (field "address" $v4)))
    (export "ipv4-socket-address" (type $v4s (eq $v4sa)))
    (type $v6a (tuple u16 u16 u16 u16 u16 u16 u16 u16))
    (export "ipv6-address" (type $v6 (eq $v6a)))
    (type $v6sa (record (field "port" u16) (field "flow-info" u32) (field "address" $v6) (field "scope-id" u32)))
    (export "ipv6-socket-address" (type $v6s (eq $v6sa)))
    (type $isa (variant (case "ipv4" $v4s) (case "ipv6" $v6s)))
    (export "ip-socket-address" (type (eq $isa)))
    (type $ec (enum "unknown" "access-denied" "not-supported" "invalid-argument" "out-of-memory" "timeout"
                    "concurrency-conflict" "not-in-progress" "would-block" "invalid-state" "new-socket-limit"
                    "address-not-bindable" "address-in-use" "remote-unreachable" "connection-refused"
                    "connection-reset" "connection-aborted" "datagram-too-large" "name-unresolvable"
                    "temporary-resolver-failure" "permanent-resolver-failure"))
    (export "error-code" (type (eq $ec)))
    (type $fam (enum "ipv4" "ipv6"))
    (export "ip-address-family" (type (eq $fam)))))
  (import "wasi:sockets/network@0.2.0" (instance $net (type $net_t)))
  (alias export $net "network" (type $network))
  (alias export $net "ip-socket-address" (type $isa))
  (alias export $net "error-code" (type $ec))
  (alias export $net "ip-address-family" (type $fam))

  (type $inet_t (instance
    (alias outer 1 $network (type $n))
    (export "network" (type $n2 (eq $n)))
    (export "instance-network" (func (result (own $n2))))))
  (import "wasi:sockets/instance-network@0.2.0" (instance $inet (type $inet_t)))

  (type $tcp_t (instance
    (export "tcp-socket" (type $sock (sub resource)))
    (alias outer 1 $network (type $n))
    (export "network" (type $n2 (eq $n)))
    (alias outer 1 $isa (type $a))
    (export "ip-socket-address" (type $a2 (eq $a)))
    (alias outer 1 $ec (type $e))
    (export "error-code" (type $e2 (eq $e)))
    (export "[method]tcp-socket.start-connect"
      (func (param "self" (borrow $sock)) (param "network" (borrow $n2)) (param "remote-address" $a2)
            (result (result (error $e2)))))))
  (import "wasi:sockets/tcp@0.2.0" (instance $tcp (type $tcp_t)))
  (alias export $tcp "tcp-socket" (type $tcp_socket))
  (type $tcpc_t (instance
    (alias outer 1 $fam (type $f))
    (export "ip-address-family" (type $f2 (eq $f)))
    (alias outer 1 $tcp_socket (type $s))
    (export "tcp-socket" (type $s2 (eq $s)))
    (alias outer 1 $ec (type $e))
    (export "error-code" (type $e2 (eq $e)))
    (export "create-tcp-socket" (func (param "address-family" $f2) (result (result (own $s2) (error $e2)))))))
  (import "wasi:sockets/tcp-create-socket@0.2.0" (instance $tcpc (type $tcpc_t)))

  (type $udp_t (instance (export "udp-socket" (type (sub resource)))))
  (import "wasi:sockets/udp@0.2.0" (instance $udp (type $udp_t)))
  (alias export $udp "udp-socket" (type $udp_socket))
  (type $udpc_t (instance
    (alias outer 1 $fam (type $f))
    (export "ip-address-family" (type $f2 (eq $f)))
    (alias outer 1 $udp_socket (type $s))
    (export "udp-socket" (type $s2 (eq $s)))
    (alias outer 1 $ec (type $e))
    (export "error-code" (type $e2 (eq $e)))
    (export "create-udp-socket" (func (param "address-family" $f2) (result (result (own $s2) (error $e2)))))))
  (import "wasi:sockets/udp-create-socket@0.2.0" (instance $udpc (type $udpc_t)))

  (type $lookup_t (instance
    (export "resolve-address-stream" (type $st (sub resource)))
    (alias outer 1 $network (type $n))
    (export "network" (type $n2 (eq $n)))
    (alias outer 1 $ec (type $e))
    (export "error-code" (type $e2 (eq $e)))
    (export "resolve-addresses"
      (func (param "network" (borrow $n2)) (param "name" string) (result (result (own $st) (error $e2)))))))
  (import "wasi:sockets/ip-name-lookup@0.2.0" (instance $lookup (type $lookup_t)))

  ;; types only: accepted without a grant
  (import "theater:simple/http-types" (instance $http_types))

  (core module $libc
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 4096))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $p i32)
      (local.set $p (global.get $bump))
      (global.set $bump (i32.add (local.get $p) (i32.add (local.get 3) (i32.const 8))))
      (local.get $p)))
  (core instance $libc (instantiate $libc))

  (alias export $inet "instance-network" (func $instance_network_f))
  (alias export $tcpc "create-tcp-socket" (func $create_tcp_f))
  (alias export $tcp "[method]tcp-socket.start-connect" (func $start_connect_f))
  (alias export $udpc "create-udp-socket" (func $create_udp_f))
  (alias export $lookup "resolve-addresses" (func $resolve_f))
  ;; () -> network handle
  (core func $instance_network (canon lower (func $instance_network_f)))
  ;; (family, retptr); retptr: disc u8 @0; ok: handle @4; err: error-code u8 @4
  (core func $create_tcp (canon lower (func $create_tcp_f) (memory (core memory $libc "memory"))))
  (core func $create_udp (canon lower (func $create_udp_f) (memory (core memory $libc "memory"))))
  ;; (self, network, addr-disc, 11 flat slots of the address, retptr); retptr: disc u8 @0, err u8 @1
  (core func $start_connect (canon lower (func $start_connect_f) (memory (core memory $libc "memory"))))
  ;; (network, name-ptr, name-len, retptr); retptr: disc u8 @0; ok: handle @4; err: u8 @4
  (core func $resolve (canon lower (func $resolve_f) (memory (core memory $libc "memory"))))
  (core instance $host
    (export "instance-network" (func $instance_network))
    (export "create-tcp" (func $create_tcp))
    (export "create-udp" (func $create_udp))
    (export "start-connect" (func $start_connect))
    (export "resolve" (func $resolve)))

  (core module $m
    (import "libc" "memory" (memory 1))
    (import "host" "instance-network" (func $instance_network (result i32)))
    (import "host" "create-tcp" (func $create_tcp (param i32 i32)))
    (import "host" "create-udp" (func $create_udp (param i32 i32)))
    (import "host" "start-connect" (func $start_connect
      (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32)))
    (import "host" "resolve" (func $resolve (param i32 i32 i32 i32)))
    (global $RET i32 (i32.const 1024))     ;; init's return area
    (global $IRET i32 (i32.const 1056))    ;; the imports' return area
    (global $OUT i32 (i32.const 1088))     ;; the 8 result bytes
    (data (i32.const 16) "localhost")      ;; 9 bytes

    ;; note(slot): copies the import result at IRET (disc @0, error-code @off) to OUT[slot*2..]
    (func $note (param $slot i32) (param $off i32)
      (local $at i32)
      (local.set $at (i32.add (global.get $OUT) (i32.shl (local.get $slot) (i32.const 1))))
      (i32.store8 (local.get $at) (i32.load8_u (global.get $IRET)))
      (i32.store8 offset=1 (local.get $at)
        (select (i32.load8_u (i32.add (global.get $IRET) (local.get $off))) (i32.const 0)
                (i32.load8_u (global.get $IRET)))))

    ;; init: (state-disc, state-ptr, state-len, id-ptr, id-len) -> RET
    ;; RET: disc u8 @0 (0 = ok); state: disc u8 @4 (1 = some), ptr @8, len @12
    (func (export "init") (param $sd i32) (param $sp i32) (param $sl i32) (param $ip i32) (param $il i32)
                          (result i32)
      (local $net i32) (local $port i32)
      (i64.store (global.get $OUT) (i64.const -1))     ;; every slot "not tried"
      (if (i32.ge_u (local.get $sl) (i32.const 2))
        (then (local.set $port (i32.load16_u (local.get $sp)))))
      (local.set $net (call $instance_network))
      ;; 1. TCP, and connect if a socket came back
      (call $create_tcp (i32.const 0) (global.get $IRET))
      (call $note (i32.const 0) (i32.const 4))
      (if (i32.eqz (i32.load8_u (global.get $IRET)))
        (then
          (call $start_connect (i32.load offset=4 (global.get $IRET)) (local.get $net)
            (i32.const 0) (local.get $port) (i32.const 127) (i32.const 0) (i32.const 0) (i32.const 1)
            (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
            (global.get $IRET))
          (call $note (i32.const 1) (i32.const 1))))
      ;; 2. UDP
      (call $create_udp (i32.const 0) (global.get $IRET))
      (call $note (i32.const 2) (i32.const 4))
      ;; 3. a name lookup
      (call $resolve (local.get $net) (i32.const 16) (i32.const 9) (global.get $IRET))
      (call $note (i32.const 3) (i32.const 4))
      (i32.store8 (global.get $RET) (i32.const 0))
      (i32.store8 offset=4 (global.get $RET) (i32.const 1))
      (i32.store offset=8 (global.get $RET) (global.get $OUT))
      (i32.store offset=12 (global.get $RET) (i32.const 8))
      (global.get $RET)))
  (core instance $i (instantiate $m (with "libc" (instance $libc)) (with "host" (instance $host))))

  (func $init (param "state" (option (list u8))) (param "params" (tuple string))
    (result (result (tuple (option (list u8))) (error string)))
    (canon lift (core func $i "init") (memory (core memory $libc "memory")) (realloc (core func $libc "realloc"))))
  (instance $actor (export "init" (func $init)))
  (export "theater:simple/actor" (instance $actor)))
