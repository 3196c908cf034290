// Package sqlsink stores frames in an embedded SQLite database (the default
// sink of serialcbd). It uses modernc.org/sqlite, so the binary stays
// cgo-free and static.
//
// Each batch is one transaction of multi-row inserts that ignore rows whose
// id is already present, so a batch retried after a failure never duplicates
// a row: delivery is at-least-once, the table's content exactly-once.
//
// Decoded fields (serialcb.Frame.Fields) go to the column fields as JSON
// text, NULL when the frame has none; SQLite's JSON functions read it
// (json_extract(fields, '$.temp')). A table made before that column existed
// gets it at Start (ALTER TABLE … ADD COLUMN), its rows kept with NULL.
package sqlsink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/sinkconf"
	"github.com/serialcbd/serialcbd/serialcb"
)

// Scheme is the prefix of the sink spec, as in "sqlite:./serialcbd.db".
const Scheme = "sqlite"

// pageSize is the page size of a database the sink creates; an existing
// one keeps its own (SQLite changes it only on VACUUM).
//
// Why not SQLite's 4 KiB: every commit logs each page it changed whole, and
// at the rates devices send (one transaction a second behind the spool) a
// commit of 180 rows, ~11 pages of new rows at 4 KiB, also logs page 1, the
// three B-tree roots and the right-hand leaves the previous commit left
// half full: ~9 pages more, as many bytes as the rows again. Halving the
// page halves those. Measured with `serialcbd bench --rate 180 --duration
// 20s` (spool on, 3 runs): disk bytes per frame 844–873 at 4 KiB, 721–760
// at 2 KiB, 721–754 at 1 KiB (write-back goes by 4 KiB memory pages, which
// caps the gain); inserts at max rate (`serialcbd bench --frames 300000`)
// 237k–271k frames/s at 4 KiB, 221k–278k at 2 KiB, 174k–210k at 1 KiB.
const pageSize = 2048

// Defaults applied by ParseSpec.
const (
	DefaultTable       = "frames"
	DefaultSynchronous = "normal"
	DefaultBusyTimeout = 5 * time.Second
)

// chunkRows is the number of rows per INSERT statement. Measured with
// BenchmarkChunkRows (batches of 1,000 frames of 64 bytes, 2 cores, median
// of 5 interleaved runs): 1 row 220k frames/s, 10 rows 364k, 50 rows 418k,
// 100 rows 404k, 200 rows 436k, 500 rows 467k. Past ~50 rows the gains are
// within run-to-run noise (±10%); 200 rows (1,000 parameters) is at the top
// of the curve and keeps the remainder ladder (50, 12, 3, 1) short.
const chunkRows = 200

// Config configures the SQLite sink.
type Config struct {
	// Path is the database file, taken from the spec "sqlite:PATH". Its
	// directory must exist; the file is created if missing.
	Path string `yaml:"-"`
	// Table receives the frames; created if missing. A plain identifier.
	Table string `yaml:"table"`
	// Synchronous is SQLite's synchronous pragma: "normal" (WAL: durable
	// across a process crash, the last commits may be lost on power loss),
	// "full" (fsync on every commit) or "off".
	Synchronous string `yaml:"synchronous"`
	// BusyTimeout is how long a write waits for a lock held by another
	// process (a reader or a backup) before the batch fails retryably.
	BusyTimeout time.Duration `yaml:"busy_timeout"`
}

// ParseSpec returns the default Config for a spec "sqlite:PATH".
func ParseSpec(spec string) (Config, error) {
	path, ok := strings.CutPrefix(spec, Scheme+":")
	if !ok {
		return Config{}, fmt.Errorf("sqlite sink spec %q: want sqlite:PATH", spec)
	}
	if path == "" {
		return Config{}, fmt.Errorf("sqlite sink spec %q: missing database path after %q", spec, Scheme+":")
	}
	return Config{
		Path:        path,
		Table:       DefaultTable,
		Synchronous: DefaultSynchronous,
		BusyTimeout: DefaultBusyTimeout,
	}, nil
}

// Validate checks the configuration without touching the file system.
func (c Config) Validate() error {
	var errs []error
	if c.Path == "" {
		errs = append(errs, errors.New("sqlite sink: path is empty: use sqlite:PATH"))
	}
	if !isIdent(c.Table) {
		errs = append(errs, fmt.Errorf("sqlite sink: table %q: use a plain identifier (letters, digits, underscore; not starting with a digit or sqlite_; at most 64 characters)", c.Table))
	}
	switch strings.ToLower(c.Synchronous) {
	case "normal", "full", "off":
	default:
		errs = append(errs, fmt.Errorf("sqlite sink: synchronous %q: use normal, full or off", c.Synchronous))
	}
	if c.BusyTimeout < 0 {
		errs = append(errs, fmt.Errorf("sqlite sink: busy_timeout %s: must not be negative", c.BusyTimeout))
	}
	return errors.Join(errs...)
}

func isIdent(s string) bool {
	return len(s) <= 64 && !strings.HasPrefix(strings.ToLower(s), "sqlite_") && sinkconf.IsName(s)
}

// Sink writes frames to a SQLite table. Create it with New, open it with
// Start. Write is safe for concurrent use; calls are serialised on the one
// writer connection SQLite allows.
type Sink struct {
	cfg Config
	log *zap.Logger
	dsn string
	// sizes are the statement sizes prepared at Start, largest first: full
	// chunks use sizes[0], a batch's remainder is covered greedily by the
	// smaller ones so that no statement is prepared on the hot path.
	sizes []int

	mu     sync.Mutex // guards db, stmts, ckpt and closed
	db     *sql.DB
	stmts  []*sql.Stmt // stmts[i] inserts sizes[i] rows
	ckpt   *checkpointer
	closed bool

	ckptEvery time.Duration // see checkpointEvery; tests shrink it
	ckptRows  int64         // see checkpointRows; tests shrink it

	bufs sync.Pool // *writeBuf
}

var (
	_ dispatch.Sink        = (*Sink)(nil)
	_ dispatch.SyncCounter = (*Sink)(nil)
)

// writeBuf is the per-Write scratch space, pooled so a batch costs no
// allocations beyond what database/sql needs.
type writeBuf struct {
	args []any
	text []byte
	ends []int // end offsets of each id, timestamp and fields in text
	tc   dispatch.TimeCache
}

// New returns a sink for cfg. It does no I/O; Start opens the database.
func New(cfg Config, log *zap.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	s := &Sink{
		cfg:       cfg,
		log:       log,
		dsn:       dsn(cfg, walLimitPages),
		sizes:     stmtSizes(chunkRows),
		ckptEvery: checkpointEvery,
		ckptRows:  checkpointRows,
	}
	s.bufs.New = func() any { return new(writeBuf) }
	return s, nil
}

// stmtSizes returns chunk, chunk/4, chunk/16, … down to 1.
func stmtSizes(chunk int) []int {
	var sizes []int
	for n := chunk; n > 1; n /= 4 {
		sizes = append(sizes, n)
	}
	return append(sizes, 1)
}

// dsn builds a modernc.org/sqlite URI. The path is escaped so that '?', '#'
// or '%' in a file name cannot be read as URI syntax. The pragmas go in the
// DSN, not in a one-off Exec, so that a connection database/sql reopens after
// an error gets them too.
func dsn(cfg Config, walLimitPages int) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10)+")")
	// A no-op on an existing database. It must run before the switch to
	// WAL, which writes the first page: the driver runs the _pragma list
	// (sorted by name) before the _journal_mode key.
	q.Add("_pragma", "page_size("+strconv.Itoa(pageSize)+")")
	q.Set("_journal_mode", "WAL")
	q.Add("_pragma", "synchronous("+strings.ToUpper(cfg.Synchronous)+")")
	// A multi-row INSERT inside a transaction keeps a statement journal so
	// it can be undone alone; in a temp file that costs a write syscall per
	// page touched (a quarter of the insert time, measured).
	q.Add("_pragma", "temp_store(MEMORY)")
	// The checkpointer copies the log into the database, not the commits;
	// they do only past the limit (see checkpoint.go).
	q.Add("_pragma", "wal_autocheckpoint("+strconv.Itoa(walLimitPages)+")")
	// BEGIN IMMEDIATE takes the write lock up front, waiting up to
	// busy_timeout, instead of failing on a lock upgrade mid-transaction.
	q.Set("_txlock", "immediate")
	return "file:" + (&url.URL{Path: cfg.Path}).EscapedPath() + "?" + q.Encode()
}

// Start opens the database, switches it to WAL, creates the table and its
// (port, seq) index if missing and prepares the insert statements.
func (s *Sink) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("sqlite sink: start after close")
	}
	if s.db != nil {
		return nil
	}
	db, err := sql.Open("sqlite", s.dsn)
	if err != nil {
		return fmt.Errorf("open sqlite database %q: %w", s.cfg.Path, err)
	}
	// SQLite has one writer: a single connection serialises concurrent
	// Writes (each waits for it, honouring its ctx) and keeps the prepared
	// statements warm. Idle connections are never closed for the same reason.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)

	if err := s.setup(ctx, db); err != nil {
		return errors.Join(err, db.Close())
	}
	ckptDB, err := sql.Open("sqlite", s.dsn)
	if err != nil {
		return errors.Join(fmt.Errorf("open sqlite database %q: %w", s.cfg.Path, err), db.Close())
	}
	ckptDB.SetMaxOpenConns(1)
	s.ckpt = startCheckpointer(ckptDB, s.log, s.ckptEvery, s.ckptRows)
	s.db = db
	s.log.Debug("sqlite sink started", zap.String("path", s.cfg.Path), zap.String("table", s.cfg.Table))
	return nil
}

func (s *Sink) setup(ctx context.Context, db *sql.DB) error {
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("open sqlite database %q (its directory must exist and be writable): %w", s.cfg.Path, err)
	}
	t := quoteIdent(s.cfg.Table)
	ddl := []string{
		`CREATE TABLE IF NOT EXISTS ` + t + ` (
	id TEXT PRIMARY KEY,
	port TEXT NOT NULL,
	seq INTEGER NOT NULL,
	received_at TEXT NOT NULL,
	payload BLOB NOT NULL,
	fields TEXT
)`,
		// Readers look frames up per port in order. It costs 15-20% of
		// insert throughput (measured with BenchmarkWriteBatch), well
		// within budget.
		`CREATE INDEX IF NOT EXISTS ` + quoteIdent(s.cfg.Table+"_port_seq") + ` ON ` + t + ` (port, seq)`,
	}
	for _, q := range ddl {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create table %s in %q: %w", t, s.cfg.Path, err)
		}
	}
	if err := s.addFieldsColumn(ctx, db, t); err != nil {
		return err
	}
	s.stmts = make([]*sql.Stmt, len(s.sizes))
	for i, n := range s.sizes {
		st, err := db.PrepareContext(ctx, insertSQL(t, n))
		if err != nil {
			return fmt.Errorf("prepare insert into %s: %w", t, err)
		}
		s.stmts[i] = st
	}
	return nil
}

// addFieldsColumn upgrades a table created before the fields column: its
// rows are kept, with NULL fields.
func (s *Sink) addFieldsColumn(ctx context.Context, db *sql.DB, table string) error {
	var n int
	err := db.QueryRowContext(ctx, `SELECT count(*) FROM pragma_table_info(?) WHERE name = 'fields'`, s.cfg.Table).Scan(&n)
	if err != nil {
		return fmt.Errorf("inspect table %s in %q: %w", table, s.cfg.Path, err)
	}
	if n > 0 {
		return nil
	}
	if _, err := db.ExecContext(ctx, `ALTER TABLE `+table+` ADD COLUMN fields TEXT`); err != nil {
		return fmt.Errorf("add column fields to table %s in %q: %w", table, s.cfg.Path, err)
	}
	s.log.Info("sqlite sink: added column fields to an existing table", zap.String("path", s.cfg.Path), zap.String("table", s.cfg.Table))
	return nil
}

func quoteIdent(s string) string { return `"` + s + `"` }

func insertSQL(table string, rows int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + table + " (id, port, seq, received_at, payload, fields) VALUES ")
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?)")
	}
	b.WriteString(" ON CONFLICT(id) DO NOTHING")
	return b.String()
}

// Write inserts the batch in one transaction. Frames already stored (same
// id) are skipped, so retrying a batch is safe. A frame the database rejects
// (a constraint or type error) fails alone, permanently, through a
// *dispatch.BatchError while the rest of the batch is committed; any other
// failure (lock timeout, disk full, I/O error) fails the whole batch
// retryably and leaves the table unchanged.
func (s *Sink) Write(ctx context.Context, batch []*serialcb.Frame) error {
	if len(batch) == 0 {
		return nil
	}
	s.mu.Lock()
	db, stmts, ckpt, closed := s.db, s.stmts, s.ckpt, s.closed
	s.mu.Unlock()
	if closed {
		return errors.New("sqlite sink: write after close")
	}
	if db == nil {
		return errors.New("sqlite sink: write before start")
	}

	var errs []error // per-frame outcomes, allocated on the first failure
	fail := func(i int, err error) {
		if errs == nil {
			errs = make([]error, len(batch))
		}
		errs[i] = dispatch.Permanent(err)
	}
	// Frames SQLite cannot represent are rejected before the transaction;
	// the rare batch that has any is inserted without them.
	frames, index := batch, []int(nil)
	for i, f := range batch {
		if err := checkFrame(f); err != nil {
			fail(i, err)
		}
	}
	if errs != nil {
		frames, index = frames[:0:0], make([]int, 0, len(batch))
		for i, f := range batch {
			if errs[i] == nil {
				frames = append(frames, f)
				index = append(index, i)
			}
		}
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return classify(fmt.Errorf("sqlite sink: begin: %w", err))
	}
	buf := s.bufs.Get().(*writeBuf)
	defer s.bufs.Put(buf)

	for off := 0; off < len(frames); {
		k := s.stmtFor(len(frames) - off)
		n := s.sizes[k]
		chunk := frames[off : off+n]
		err := s.exec(ctx, tx, stmts[k], chunk, buf)
		if err != nil && isDataError(err) && n > 1 {
			// The statement was rolled back alone; find the offending
			// frames by inserting the chunk's rows one by one.
			err = nil
			for j, f := range chunk {
				e := s.exec(ctx, tx, stmts[len(stmts)-1], chunk[j:j+1], buf)
				if e == nil {
					continue
				}
				if !isDataError(e) {
					err = e
					break
				}
				fail(at(index, off+j), fmt.Errorf("sqlite sink: frame %s rejected: %w", f.ID, e))
			}
		} else if err != nil && isDataError(err) {
			fail(at(index, off), fmt.Errorf("sqlite sink: frame %s rejected: %w", chunk[0].ID, err))
			err = nil
		}
		if err != nil {
			return errors.Join(classify(fmt.Errorf("sqlite sink: insert: %w", err)), rollback(tx))
		}
		off += n
	}
	if err := tx.Commit(); err != nil {
		return classify(fmt.Errorf("sqlite sink: commit: %w", err))
	}
	ckpt.committed(len(frames))
	if errs != nil {
		return &dispatch.BatchError{Errs: errs}
	}
	return nil
}

func at(index []int, i int) int {
	if index == nil {
		return i
	}
	return index[i]
}

// rollback ends a failed transaction; its own error only matters if it is
// not the expected "already rolled back" that some SQLite errors cause.
func rollback(tx *sql.Tx) error {
	if err := tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) && !strings.Contains(err.Error(), "no transaction is active") {
		return fmt.Errorf("sqlite sink: rollback: %w", err)
	}
	return nil
}

// stmtFor returns the index of the largest prepared statement size that
// fits in rem rows.
func (s *Sink) stmtFor(rem int) int {
	for k, n := range s.sizes {
		if n <= rem {
			return k
		}
	}
	return len(s.sizes) - 1
}

// exec inserts len(chunk) rows with st, which must take exactly that many.
func (s *Sink) exec(ctx context.Context, tx *sql.Tx, st *sql.Stmt, chunk []*serialcb.Frame, buf *writeBuf) error {
	// Texts of the chunk (ids, timestamps and fields) are formatted into
	// one buffer and turned into one string, then sliced: one allocation
	// per chunk. Fields are bound as text, not as a []byte, so that SQLite
	// stores them as TEXT (a BLOB would read as JSONB to json_extract).
	text, ends := buf.text[:0], buf.ends[:0]
	for _, f := range chunk {
		text, _ = f.ID.AppendText(text)
		ends = append(ends, len(text))
		text = buf.tc.Append(text, f.ReceivedAt)
		ends = append(ends, len(text))
		text = append(text, f.Fields...)
		ends = append(ends, len(text))
	}
	buf.text, buf.ends = text, ends
	str := string(text)

	args := buf.args[:0]
	var port any
	lastPort := ""
	pos := 0
	for i, f := range chunk {
		id := str[pos:ends[3*i]]
		at := str[ends[3*i]:ends[3*i+1]]
		var fields any // NULL
		if len(f.Fields) > 0 {
			fields = str[ends[3*i+1]:ends[3*i+2]]
		}
		pos = ends[3*i+2]
		if port == nil || f.Port != lastPort {
			// Frames of a batch usually share a port: box it once.
			port, lastPort = f.Port, f.Port
		}
		payload := f.Payload
		if payload == nil {
			// A nil []byte binds as NULL; an empty frame is an empty BLOB.
			payload = []byte{}
		}
		args = append(args, id, port, int64(f.Seq), at, payload, fields)
	}
	buf.args = args
	_, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	clear(args) // do not keep payloads alive in the pool
	return err
}

// checkFrame rejects what SQLite cannot store, before any statement runs.
func checkFrame(f *serialcb.Frame) error {
	if f == nil {
		return errors.New("sqlite sink: nil frame")
	}
	if f.Seq > math.MaxInt64 {
		return fmt.Errorf("sqlite sink: frame %s: seq %d exceeds SQLite INTEGER range", f.ID, f.Seq)
	}
	return nil
}

// isDataError reports an error caused by the row itself: retrying it cannot
// help, but the other rows of the batch can still be stored.
func isDataError(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_RANGE:
		return true
	}
	return false
}

// classify marks batch-level errors. Everything but a data error is left
// retryable: a lock timeout, a full disk, an I/O error, a read-only or
// missing file are conditions an operator can fix while dispatch spools.
func classify(err error) error {
	if isDataError(err) {
		return dispatch.Permanent(err)
	}
	return err
}

// Syncs counts the fsyncs of the checkpointer's checkpoints (two each: the
// log, then the database file); commits make none under synchronous
// normal. It implements dispatch.SyncCounter.
func (s *Sink) Syncs() uint64 {
	s.mu.Lock()
	c := s.ckpt
	s.mu.Unlock()
	if c == nil {
		return 0
	}
	return c.syncs.Load()
}

// Close checkpoints the write-ahead log into the database file (so the
// file is complete on its own) and closes it. It is idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.db == nil {
		return nil
	}
	var errs []error
	for _, st := range s.stmts {
		errs = append(errs, st.Close())
	}
	errs = append(errs, s.ckpt.stop())
	// TRUNCATE also empties the -wal file. A reader holding the database
	// makes the checkpoint partial (SQLITE_BUSY): not worth failing Close.
	if _, err := s.db.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		s.log.Warn("sqlite sink: checkpoint on close", zap.String("path", s.cfg.Path), zap.Error(err))
	}
	errs = append(errs, s.db.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close sqlite database %q: %w", s.cfg.Path, err)
	}
	return nil
}
