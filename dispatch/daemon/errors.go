package daemon

import "fmt"

// UsageError is a mistake in the configuration or the command line that
// built it (a flag, a port, a sink spec): the command should exit 2, as it
// does for a *configs.Error.
type UsageError struct{ Err error }

// Error returns the mistake's message.
func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the mistake.
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a *UsageError with a formatted message.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}
