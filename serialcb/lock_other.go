//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package serialcb

// uucpLockDir is empty: Windows opens COM ports exclusively itself.
const uucpLockDir = ""

// portLock is nothing where the OS makes an open port exclusive.
type portLock struct{}

func lockPort(string, string) (*portLock, error) { return nil, nil }

func (l *portLock) release() {}
