//go:build !linux

package mqttsink

import "net"

// quickAck is a no-op where TCP_QUICKACK does not exist.
func quickAck(conn net.Conn) net.Conn { return conn }
