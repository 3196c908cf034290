package bench

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/serialcbd/serialcbd/dispatch/httpsink"
)

func TestBenchReceiverChecksNDJSONLines(t *testing.T) {
	h := receiver(true)
	for _, tt := range []struct {
		body, frames string
		code         int
	}{
		{"{}\n{}\n", "2", http.StatusNoContent},
		{"{}\n{}\n", "3", http.StatusBadRequest},
		{"{}\n", "", http.StatusBadRequest},
	} {
		req := httptest.NewRequest(http.MethodPost, "/ingest", strings.NewReader(tt.body))
		if tt.frames != "" {
			req.Header.Set(httpsink.FramesHeader, tt.frames)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.code {
			t.Errorf("body %q, frames %q: %d, want %d", tt.body, tt.frames, rec.Code, tt.code)
		}
	}
}
