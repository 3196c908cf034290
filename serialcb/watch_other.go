//go:build !linux

package serialcb

// pathWatch is Linux only; elsewhere the retry timer reopens the port.
type pathWatch struct{}

func watchPath(string) *pathWatch { return nil }

func (w *pathWatch) C() <-chan struct{} { return nil }

func (w *pathWatch) Close() {}
