//go:build !linux

package serialcb

// pollReader is Linux only (pollread_linux.go); elsewhere every read goes
// through go.bug.st/serial.
type pollReader struct{}

func openPollReader(string) *pollReader { return nil }

func (*pollReader) Read([]byte) (int, error) { panic("unreachable") }

func (*pollReader) ReadEach([]byte, func(int) bool) (bool, error) { panic("unreachable") }

func (*pollReader) Close() error { return nil }
