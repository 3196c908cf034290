package sqlsink

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/serialcb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseSpec(t *testing.T) {
	tests := []struct {
		spec    string
		path    string
		wantErr string
	}{
		{spec: "sqlite:./serialcbd.db", path: "./serialcbd.db"},
		{spec: "sqlite:/var/lib/x.db", path: "/var/lib/x.db"},
		{spec: "sqlite:dir/with space?.db", path: "dir/with space?.db"},
		{spec: "sqlite:", wantErr: "missing database path"},
		{spec: "file:x.db", wantErr: "want sqlite:PATH"},
		{spec: "", wantErr: "want sqlite:PATH"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			cfg, err := ParseSpec(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSpec(%q) error = %v, want it to contain %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := Config{Path: tt.path, Table: "frames", Synchronous: "normal", BusyTimeout: 5 * time.Second}
			if cfg != want {
				t.Fatalf("ParseSpec(%q) = %+v, want %+v", tt.spec, cfg, want)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("default config invalid: %v", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	base, _ := ParseSpec("sqlite:x.db")
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{name: "ok"},
		{name: "custom table", edit: func(c *Config) { c.Table = "Frames_2" }},
		{name: "full", edit: func(c *Config) { c.Synchronous = "FULL" }},
		{name: "off", edit: func(c *Config) { c.Synchronous = "off" }},
		{name: "zero busy timeout", edit: func(c *Config) { c.BusyTimeout = 0 }},
		{name: "empty path", edit: func(c *Config) { c.Path = "" }, wantErr: "path is empty"},
		{name: "empty table", edit: func(c *Config) { c.Table = "" }, wantErr: "plain identifier"},
		{name: "injection", edit: func(c *Config) { c.Table = `frames"; DROP TABLE x; --` }, wantErr: "plain identifier"},
		{name: "dotted", edit: func(c *Config) { c.Table = "main.frames" }, wantErr: "plain identifier"},
		{name: "leading digit", edit: func(c *Config) { c.Table = "1frames" }, wantErr: "plain identifier"},
		{name: "reserved", edit: func(c *Config) { c.Table = "sqlite_master" }, wantErr: "plain identifier"},
		{name: "too long", edit: func(c *Config) { c.Table = strings.Repeat("a", 65) }, wantErr: "plain identifier"},
		{name: "synchronous", edit: func(c *Config) { c.Synchronous = "extra" }, wantErr: "use normal, full or off"},
		{name: "busy timeout", edit: func(c *Config) { c.BusyTimeout = -time.Second }, wantErr: "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			if tt.edit != nil {
				tt.edit(&cfg)
			}
			err := cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want it to contain %q", err, tt.wantErr)
			}
			if _, err := New(cfg, nil); err == nil {
				t.Fatal("New accepted an invalid config")
			}
		})
	}
}

// frames returns n frames of port "p" with distinct ids and payloads.
func frames(n int) []*serialcb.Frame {
	var gen serialcb.IDGen
	now := time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)
	out := make([]*serialcb.Frame, n)
	for i := range out {
		at := now.Add(time.Duration(i) * time.Millisecond)
		out[i] = &serialcb.Frame{
			ID:         gen.New(at),
			Port:       "p",
			Seq:        uint64(i + 1),
			ReceivedAt: at,
			Payload:    []byte(fmt.Sprintf("frame %d", i)),
		}
	}
	return out
}

// newSink returns a sink, not started, on a fresh database.
func newSink(t *testing.T, edit func(*Config)) (*Sink, Config) {
	t.Helper()
	cfg, err := ParseSpec("sqlite:" + filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, cfg
}

// startUntilEnd starts s and closes it at the end of the test.
func startUntilEnd(t *testing.T, s *Sink) {
	t.Helper()
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
}

// start opens a sink on a fresh database and closes it at the end of the test.
func start(t *testing.T, edit func(*Config)) (*Sink, Config) {
	t.Helper()
	s, cfg := newSink(t, edit)
	startUntilEnd(t, s)
	return s, cfg
}

// openDB opens the sink's database with a connection of the test's own.
func openDB(t *testing.T, cfg Config) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", cfg.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func count(t *testing.T, db *sql.DB, table string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM "` + table + `"`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWriteStoresRecord(t *testing.T) {
	s, cfg := start(t, nil)
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.FixedZone("CET", 3600))
	batch := []*serialcb.Frame{
		{ID: serialcb.ID{1}, Port: "ttyUSB0", Seq: 1, ReceivedAt: at, Payload: []byte("hello\n")},
		{ID: serialcb.ID{2}, Port: "rs485", Seq: math.MaxInt64, ReceivedAt: at, Payload: []byte{0xff, 0x00, 0xfe}},
		{ID: serialcb.ID{3}, Port: "p", Seq: 3, ReceivedAt: at, Payload: nil},
		{ID: serialcb.ID{4}, Port: "p", Seq: 4, ReceivedAt: at, Payload: []byte{}},
	}
	if err := s.Write(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, cfg)
	rows, err := db.Query(`SELECT id, port, seq, received_at, payload, typeof(id), typeof(received_at), typeof(payload) FROM frames ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	i := 0
	for ; rows.Next(); i++ {
		var (
			id, port, receivedAt, tID, tAt, tPayload string
			seq                                      int64
			payload                                  []byte
		)
		if err := rows.Scan(&id, &port, &seq, &receivedAt, &payload, &tID, &tAt, &tPayload); err != nil {
			t.Fatal(err)
		}
		f := batch[i]
		if id != f.ID.String() || port != f.Port || uint64(seq) != f.Seq || !bytes.Equal(payload, f.Payload) {
			t.Errorf("row %d = (%s, %s, %d, %q), want (%s, %s, %d, %q)", i, id, port, seq, payload, f.ID, f.Port, f.Seq, f.Payload)
		}
		if want := "2025-01-02T02:04:05.000000006Z"; receivedAt != want {
			t.Errorf("row %d received_at = %q, want %q", i, receivedAt, want)
		}
		if tID != "text" || tAt != "text" || tPayload != "blob" {
			t.Errorf("row %d storage classes = %s, %s, %s; want text, text, blob", i, tID, tAt, tPayload)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(batch) {
		t.Fatalf("got %d rows, want %d", i, len(batch))
	}
}

func TestWriteBatchSizes(t *testing.T) {
	// Sizes around each prepared statement size (200, 50, 12, 3, 1).
	for _, n := range []int{0, 1, 2, 3, 4, 11, 12, 13, 49, 50, 51, 199, 200, 201, 263, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s, cfg := start(t, nil)
			batch := frames(n)
			for range 2 {
				// The second write is a retry: nothing may be duplicated.
				if err := s.Write(t.Context(), batch); err != nil {
					t.Fatal(err)
				}
			}
			if got := count(t, openDB(t, cfg), "frames"); got != n {
				t.Fatalf("rows = %d, want %d", got, n)
			}
		})
	}
}

func TestWriteRetryOverlapping(t *testing.T) {
	s, cfg := start(t, nil)
	all := frames(300)
	if err := s.Write(t.Context(), all[:200]); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(t.Context(), all[100:]); err != nil {
		t.Fatal(err)
	}
	if got := count(t, openDB(t, cfg), "frames"); got != 300 {
		t.Fatalf("rows = %d, want 300", got)
	}
}

func TestWriteConcurrent(t *testing.T) {
	s, cfg := start(t, nil)
	all := frames(2000)
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for i := range 20 {
		wg.Go(func() { errs <- s.Write(t.Context(), all[i*100:(i+1)*100]) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := count(t, openDB(t, cfg), "frames"); got != len(all) {
		t.Fatalf("rows = %d, want %d", got, len(all))
	}
}

func TestWriteCustomTable(t *testing.T) {
	s, cfg := start(t, func(c *Config) { c.Table = "Readings"; c.Synchronous = "full" })
	if err := s.Write(t.Context(), frames(3)); err != nil {
		t.Fatal(err)
	}
	if got := count(t, openDB(t, cfg), "Readings"); got != 3 {
		t.Fatalf("rows = %d, want 3", got)
	}
}

// batchErrs returns the per-frame errors of a *dispatch.BatchError.
func batchErrs(t *testing.T, err error, n int) []error {
	t.Helper()
	var be *dispatch.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("error = %v, want a *dispatch.BatchError", err)
	}
	if len(be.Errs) != n {
		t.Fatalf("BatchError has %d errors, want %d", len(be.Errs), n)
	}
	return be.Errs
}

func TestWriteRejectsOnlyBadFrames(t *testing.T) {
	tests := []struct {
		name string
		ddl  string                        // table created before the sink starts
		bad  func([]*serialcb.Frame) []int // spoils some frames, returns their indexes
	}{
		{
			name: "seq out of range",
			bad: func(fs []*serialcb.Frame) []int {
				fs[3].Seq = math.MaxInt64 + 1
				fs[250].Seq = math.MaxUint64
				return []int{3, 250}
			},
		},
		{
			name: "check constraint",
			ddl:  `CREATE TABLE frames (id TEXT PRIMARY KEY, port TEXT NOT NULL, seq INTEGER NOT NULL, received_at TEXT NOT NULL, payload BLOB NOT NULL CHECK (length(payload) < 20))`,
			bad: func(fs []*serialcb.Frame) []int {
				for _, i := range []int{0, 7, 120, 199, 201, 299} {
					fs[i].Payload = bytes.Repeat([]byte("x"), 20)
				}
				return []int{0, 7, 120, 199, 201, 299}
			},
		},
		{
			name: "unique constraint",
			ddl:  `CREATE TABLE frames (id TEXT PRIMARY KEY, port TEXT NOT NULL, seq INTEGER NOT NULL UNIQUE, received_at TEXT NOT NULL, payload BLOB NOT NULL)`,
			bad: func(fs []*serialcb.Frame) []int {
				fs[42].Seq = fs[41].Seq
				fs[260].Seq = fs[259].Seq
				return []int{42, 260}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "test.db")
			if tt.ddl != "" {
				db, err := sql.Open("sqlite", path)
				if err != nil {
					t.Fatal(err)
				}
				_, err = db.Exec(tt.ddl)
				db.Close()
				if err != nil {
					t.Fatal(err)
				}
			}
			cfg, _ := ParseSpec("sqlite:" + path)
			s, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Start(t.Context()); err != nil {
				t.Fatal(err)
			}
			defer s.Close()

			batch := frames(300) // a full chunk and a remainder
			bad := tt.bad(batch)
			errs := batchErrs(t, s.Write(t.Context(), batch), len(batch))
			for i, err := range errs {
				wantBad := false
				for _, b := range bad {
					wantBad = wantBad || b == i
				}
				switch {
				case wantBad && !dispatch.IsPermanent(err):
					t.Errorf("frame %d: error %v, want a permanent error", i, err)
				case !wantBad && err != nil:
					t.Errorf("frame %d: unexpected error %v", i, err)
				}
			}
			if got, want := count(t, openDB(t, cfg), "frames"), len(batch)-len(bad); got != want {
				t.Fatalf("rows = %d, want %d", got, want)
			}
		})
	}
}

func TestWriteBusyIsRetryable(t *testing.T) {
	s, cfg := start(t, func(c *Config) { c.BusyTimeout = 50 * time.Millisecond })
	// Another process holds the write lock.
	db := openDB(t, cfg)
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	batch := frames(10)
	err = s.Write(t.Context(), batch)
	if err == nil || dispatch.IsPermanent(err) {
		t.Fatalf("Write under a held lock = %v, want a retryable error", err)
	}
	if !strings.Contains(err.Error(), "SQLITE_BUSY") {
		t.Errorf("error %q does not name SQLITE_BUSY", err)
	}
	if _, err := conn.ExecContext(t.Context(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(t.Context(), batch); err != nil {
		t.Fatalf("retry after the lock is released: %v", err)
	}
	if got := count(t, db, "frames"); got != len(batch) {
		t.Fatalf("rows = %d, want %d", got, len(batch))
	}
}

func TestWriteCancelled(t *testing.T) {
	s, cfg := start(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err := s.Write(ctx, frames(10))
	if err == nil || dispatch.IsPermanent(err) {
		t.Fatalf("Write with a cancelled context = %v, want a retryable error", err)
	}
	if got := count(t, openDB(t, cfg), "frames"); got != 0 {
		t.Fatalf("rows = %d, want 0", got)
	}
}

func TestStartErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		path    string
		wantErr string
	}{
		{name: "missing directory", path: filepath.Join(dir, "nope", "x.db"), wantErr: "its directory must exist"},
		{name: "directory as file", path: dir, wantErr: "open sqlite database"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _ := ParseSpec("sqlite:" + tt.path)
			s, err := New(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = s.Start(t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), tt.path) {
				t.Fatalf("Start() = %v, want an error naming %q and containing %q", err, tt.path, tt.wantErr)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestLifecycle(t *testing.T) {
	cfg, _ := ParseSpec("sqlite:" + filepath.Join(t.TempDir(), "x.db"))
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(t.Context(), frames(1)); err == nil {
		t.Fatal("Write before Start succeeded")
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("second Start: %v", err)
	}
	all := frames(8)
	if err := s.Write(t.Context(), all[:5]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Write(t.Context(), frames(1)); err == nil {
		t.Fatal("Write after Close succeeded")
	}
	// The checkpoint on Close leaves the database file complete on its own.
	if fi, err := os.Stat(cfg.Path + "-wal"); err == nil && fi.Size() > 0 {
		t.Errorf("WAL file holds %d bytes after Close, want it checkpointed", fi.Size())
	}

	// Reopening appends to the same table.
	s2, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.Write(t.Context(), all); err != nil {
		t.Fatal(err)
	}
	if got := count(t, openDB(t, cfg), "frames"); got != 8 {
		t.Fatalf("rows = %d, want 8 (5 of them written before the restart)", got)
	}
	var mode string
	if err := openDB(t, cfg).QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
}

// Decoded fields are stored as JSON text that SQLite's JSON functions
// read; a frame without fields stores NULL.
func TestWriteStoresFields(t *testing.T) {
	s, cfg := start(t, nil)
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	batch := []*serialcb.Frame{
		{ID: serialcb.ID{1}, Port: "gps", Seq: 1, ReceivedAt: at, Payload: []byte("$GPGGA,…"), Fields: []byte(`{"type":"GGA","lat":48.85837,"satellites":8}`)},
		{ID: serialcb.ID{2}, Port: "gps", Seq: 2, ReceivedAt: at, Payload: []byte("noise")},
		{ID: serialcb.ID{3}, Port: "env", Seq: 1, ReceivedAt: at, Payload: []byte("21.5"), Fields: []byte(`{"temp":"21.5"}`)},
	}
	if err := s.Write(t.Context(), batch); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, cfg)
	rows, err := db.Query(`SELECT fields, typeof(fields), json_extract(fields, '$.lat'), json_extract(fields, '$.temp') FROM frames ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var fields, lat, temp sql.NullString
		var typ string
		if err := rows.Scan(&fields, &typ, &lat, &temp); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s|%s|%s|%s", fields.String, typ, lat.String, temp.String))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`{"type":"GGA","lat":48.85837,"satellites":8}|text|48.85837|`,
		`|null||`,
		`{"temp":"21.5"}|text||21.5`,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rows\n%q\nwant\n%q", got, want)
	}
}

// A table made before the fields column existed gets it at Start; its rows
// are kept (fields NULL) and new frames store their fields.
func TestStartAddsFieldsColumn(t *testing.T) {
	cfg, err := ParseSpec("sqlite:" + filepath.Join(t.TempDir(), "old.db"))
	if err != nil {
		t.Fatal(err)
	}
	old := openDB(t, cfg)
	for _, q := range []string{
		`CREATE TABLE frames (id TEXT PRIMARY KEY, port TEXT NOT NULL, seq INTEGER NOT NULL, received_at TEXT NOT NULL, payload BLOB NOT NULL)`,
		`INSERT INTO frames VALUES ('old-1', 'p', 1, '2024-01-01T00:00:00.000000000Z', x'6869')`,
	} {
		if _, err := old.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second Start finds the column and leaves it
		s, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f := &serialcb.Frame{ID: serialcb.ID{9}, Port: "p", Seq: 2, ReceivedAt: time.Now(), Payload: []byte("x"), Fields: []byte(`{"a":"b"}`)}
	if err := s.Write(t.Context(), []*serialcb.Frame{f}); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, cfg)
	var payload []byte
	var oldFields sql.NullString
	if err := db.QueryRow(`SELECT payload, fields FROM frames WHERE id = 'old-1'`).Scan(&payload, &oldFields); err != nil {
		t.Fatal(err)
	}
	if string(payload) != "hi" || oldFields.Valid {
		t.Errorf("old row: payload %q fields %v, want hi and NULL", payload, oldFields)
	}
	var fields string
	if err := db.QueryRow(`SELECT fields FROM frames WHERE id = ?`, f.ID.String()).Scan(&fields); err != nil {
		t.Fatal(err)
	}
	if fields != `{"a":"b"}` {
		t.Errorf("new row fields %q", fields)
	}
	if n := count(t, db, "frames"); n != 2 {
		t.Errorf("%d rows, want 2", n)
	}
}

// A database the sink creates gets pageSize pages (fewer bytes logged per
// commit); one made before keeps its own, and both run in WAL mode.
func TestPageSize(t *testing.T) {
	pragmas := func(t *testing.T, cfg Config) (int, string) {
		t.Helper()
		db := openDB(t, cfg)
		var size int
		var mode string
		if err := db.QueryRow(`PRAGMA page_size`).Scan(&size); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(`PRAGMA journal_mode`).Scan(&mode); err != nil {
			t.Fatal(err)
		}
		return size, mode
	}
	t.Run("new", func(t *testing.T) {
		s, cfg := start(t, nil)
		if err := s.Write(t.Context(), frames(3)); err != nil {
			t.Fatal(err)
		}
		if size, mode := pragmas(t, cfg); size != pageSize || mode != "wal" {
			t.Errorf("new database: page_size %d, journal_mode %s; want %d, wal", size, mode, pageSize)
		}
	})
	t.Run("existing", func(t *testing.T) {
		cfg, err := ParseSpec("sqlite:" + filepath.Join(t.TempDir(), "old.db"))
		if err != nil {
			t.Fatal(err)
		}
		old, err := sql.Open("sqlite", "file:"+cfg.Path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := old.Exec(`PRAGMA page_size = 4096; CREATE TABLE other (x)`); err != nil {
			t.Fatal(err)
		}
		if err := old.Close(); err != nil {
			t.Fatal(err)
		}
		s, err := New(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		startUntilEnd(t, s)
		if err := s.Write(t.Context(), frames(3)); err != nil {
			t.Fatal(err)
		}
		if size, mode := pragmas(t, cfg); size != 4096 || mode != "wal" {
			t.Errorf("existing database: page_size %d, journal_mode %s; want 4096 (its own), wal", size, mode)
		}
		if n := count(t, openDB(t, cfg), "frames"); n != 3 {
			t.Errorf("%d rows, want 3", n)
		}
	})
}
