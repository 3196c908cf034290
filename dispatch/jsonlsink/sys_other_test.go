//go:build !unix

package jsonlsink

import (
	"errors"
	"os"
)

func currentUmask() os.FileMode { return 0 }

func mkfifo(string) error { return errors.ErrUnsupported }
