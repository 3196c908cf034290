package daemon

import (
	"path/filepath"
	"testing"

	"github.com/serialcbd/serialcbd/configs"
)

// BenchmarkPipelineSQLiteSpooled is BenchmarkPipelineSQLite through the
// on-disk spool (run's default): every frame is appended to the sink's
// spool and read back from it, so both the append and the read/ack paths
// are measured.
func BenchmarkPipelineSQLiteSpooled(b *testing.B) {
	db := filepath.Join(b.TempDir(), "bench.db")
	benchPipeline(b, b.TempDir(), configs.Sink{Name: "db", URL: "sqlite:" + db})
}
