package serialcb

import (
	"testing"

	"go.uber.org/goleak"
)

// Reader tests start read loops and their port watchers; none may outlive
// its test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
