package mqttsink

import (
	"net"
	"syscall"
)

// quickAck wraps a TCP connection so that every acknowledgement the broker
// sends is ACKed at once (TCP_QUICKACK after each read, which Linux clears
// again by itself). Without it, a broker that leaves Nagle's algorithm on
// (Mosquitto's default: set_tcp_nodelay false) holds back all PUBACKs after
// the first until our delayed ACK of it, ~40 ms later, for every batch.
func quickAck(conn net.Conn) net.Conn {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return conn
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return conn
	}
	q := &quickAckConn{TCPConn: tc, rc: rc}
	q.set()
	return q
}

type quickAckConn struct {
	*net.TCPConn
	rc syscall.RawConn
}

func (c *quickAckConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	if n > 0 {
		c.set()
	}
	return n, err
}

func (c *quickAckConn) set() {
	_ = c.rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
