//go:build !unix

package daemon

import "errors"

// raiseHangup fails: there is no SIGHUP to send here (Reload is the way).
func raiseHangup() error { return errors.ErrUnsupported }
