// Package pgsink stores frames in a PostgreSQL table, through
// github.com/jackc/pgx/v5.
//
// Each batch is one INSERT … SELECT FROM unnest(arrays) … ON CONFLICT (id)
// DO NOTHING (a one-row INSERT … VALUES for a batch of one): one statement
// and one round trip whatever the batch size, and a batch retried after a
// failure never duplicates a row, so delivery is at-least-once and the
// table's content exactly-once. The table holds received_at as timestamptz
// (microseconds) and received_ns, the exact Unix nanoseconds.
//
// Failures are classified for dispatch, which owns the retries: a lost
// connection, a server that restarts or refuses connections, a full pool
// or a cancelled context fail the batch retryably; a row the server rejects
// (SQLSTATE class 22 data exception or 23 integrity constraint violation)
// fails alone and permanently, in a *dispatch.BatchError, while the rest of
// its batch is stored.
package pgsink

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/serialcbd/serialcbd/dispatch"
	"github.com/serialcbd/serialcbd/dispatch/sinkconf"
	"github.com/serialcbd/serialcbd/serialcb"
)

// Schemes are the prefixes of the sink spec (libpq connection URLs).
var Schemes = []string{"postgres", "postgresql"}

// Defaults applied by ParseSpec.
const (
	DefaultTable          = "frames"
	DefaultMaxConns       = 4
	DefaultConnectTimeout = 5 * time.Second
	// DefaultApplicationName is the application_name of the sink's
	// connections (pg_stat_activity) unless the URL sets one.
	DefaultApplicationName = "serialcbd"
)

const (
	// maxConnsLimit bounds MaxConns: a PostgreSQL backend is a process.
	maxConnsLimit = 256
	// maxIdentLen is PostgreSQL's NAMEDATALEN-1, less room for the index
	// name's "_port_seq" suffix.
	maxIdentLen = 63 - len("_port_seq")
)

// Config configures the PostgreSQL sink.
type Config struct {
	// URL is the whole sink spec, a libpq connection URL such as
	// postgres://user@host:5432/db?sslmode=verify-full. pgx reads it with
	// the PG* environment variables (PGPASSWORD, PGSSLMODE, …) and
	// ~/.pgpass as libpq does. Its password and query are never logged.
	URL string `yaml:"-"`
	// Table receives the frames: a plain identifier, or schema.table.
	// PostgreSQL folds unquoted names to lower case, and so does the sink.
	Table string `yaml:"table"`
	// MaxConns bounds the connections to the server, hence the batches
	// written at once.
	MaxConns int `yaml:"max_conns"`
	// PasswordEnv names an environment variable holding the password. It
	// overrides the URL's password and PGPASSWORD. Optional.
	PasswordEnv string `yaml:"password_env"`
	// CreateTable creates the table and its (port, seq) index if missing,
	// on the first successful connection.
	CreateTable bool `yaml:"create_table"`
	// ConnectTimeout bounds one connection attempt (TCP, TLS, auth), unless
	// the URL sets connect_timeout.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

// ParseSpec returns the default Config for a spec "postgres://…" or
// "postgresql://…".
func ParseSpec(spec string) (Config, error) {
	if !hasScheme(spec) {
		return Config{}, fmt.Errorf("postgres sink spec %q: want a postgres:// or postgresql:// URL", sinkconf.Redact(spec))
	}
	return Config{
		URL:            spec,
		Table:          DefaultTable,
		MaxConns:       DefaultMaxConns,
		CreateTable:    true,
		ConnectTimeout: DefaultConnectTimeout,
	}, nil
}

func hasScheme(spec string) bool {
	for _, s := range Schemes {
		if strings.HasPrefix(spec, s+"://") {
			return true
		}
	}
	return false
}

// Validate checks the configuration without I/O. The URL's options are
// checked by Start: pgx reads files (~/.pgpass, certificates) to parse them.
func (c Config) Validate() error {
	var errs []error
	if u, err := sinkconf.ParseURL(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("postgres sink: %w", err))
	} else if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		errs = append(errs, fmt.Errorf("postgres sink: url %s: scheme must be postgres or postgresql", safeURL(u)))
	} else if err := checkHosts(u.Host); err != nil {
		errs = append(errs, fmt.Errorf("postgres sink: url %s: %w", safeURL(u), err))
	}
	if _, _, err := splitTable(c.Table); err != nil {
		errs = append(errs, &sinkconf.KeyError{Key: "table", Err: err})
	}
	if c.MaxConns < 1 || c.MaxConns > maxConnsLimit {
		errs = append(errs, sinkconf.KeyErrorf("max_conns", "postgres sink: max_conns %d: must be between 1 and %d", c.MaxConns, maxConnsLimit))
	}
	if c.PasswordEnv != "" && !isEnvName(c.PasswordEnv) {
		errs = append(errs, sinkconf.KeyErrorf("password_env", "postgres sink: password_env %q: must be the name of an environment variable (letters, digits, underscore), not the password itself", redactValue(c.PasswordEnv)))
	}
	if c.ConnectTimeout <= 0 {
		errs = append(errs, sinkconf.KeyErrorf("connect_timeout", "postgres sink: connect_timeout %s: must be positive, e.g. 5s", c.ConnectTimeout))
	}
	return errors.Join(errs...)
}

// checkHosts checks the hosts and ports of a URL's host part, which libpq
// lets list several servers: "a.example,b.example:5433". An empty host
// (a Unix socket given by ?host=…) is left to pgx.
func checkHosts(hosts string) error {
	for hp := range strings.SplitSeq(hosts, ",") {
		host, port := hp, ""
		if i := strings.LastIndexByte(hp, ':'); i >= 0 && i > strings.LastIndexByte(hp, ']') {
			host, port = hp[:i], hp[i+1:]
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if err := sinkconf.CheckPort(port); err != nil {
			return err
		}
		if host == "" && hosts == "" {
			continue
		}
		if err := sinkconf.CheckHost(host); err != nil {
			return err
		}
	}
	return nil
}

// splitTable splits "table" or "schema.table" into lower-case identifiers.
func splitTable(s string) (schema, table string, err error) {
	table = s
	if i := strings.IndexByte(s, '.'); i >= 0 {
		schema, table = s[:i], s[i+1:]
		if !isIdent(schema) {
			return "", "", fmt.Errorf("postgres sink: table %q: schema %q is not a plain identifier (letters, digits, underscore; not starting with a digit; at most %d characters)", s, schema, maxIdentLen)
		}
	}
	if !isIdent(table) {
		return "", "", fmt.Errorf("postgres sink: table %q: use a plain identifier or schema.table (letters, digits, underscore; not starting with a digit; at most %d characters)", s, maxIdentLen)
	}
	return strings.ToLower(schema), strings.ToLower(table), nil
}

func isIdent(s string) bool {
	return len(s) <= maxIdentLen && sinkconf.IsName(s)
}

func isEnvName(s string) bool { return sinkconf.IsName(s) }

// redactValue shows at most the start of a value that may be a secret.
func redactValue(s string) string {
	if len(s) <= 4 {
		return s
	}
	return s[:2] + "…"
}

// safeURL is the URL as errors and logs show it: without password and
// query (which may hold a password or key file paths).
func safeURL(u *url.URL) string {
	v := &url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	if u.User != nil {
		v.User = url.User(u.User.Username())
	}
	return v.String()
}

// Sink writes frames to a PostgreSQL table. Create it with New, start it
// with Start. Write is safe for concurrent use; up to MaxConns batches are
// written at once.
type Sink struct {
	cfg       Config
	log       *zap.Logger
	safeURL   string
	table     string // quoted, schema-qualified when configured
	index     string // quoted index name
	insert    string // the batch INSERT statement (unnest)
	insertOne string // the INSERT statement of a batch of one

	mu     sync.Mutex // guards pool and closed
	pool   *pool
	closed bool

	// setupMu serialises table creation; ready is set once it succeeded
	// and cleared when the server says the table is missing.
	setupMu sync.Mutex
	ready   bool

	// down is set while the server has not answered since Start warned
	// about it, so that its coming back is logged once.
	down atomic.Bool

	method method // how batches are written; methodAuto but in benchmarks
}

var _ dispatch.Sink = (*Sink)(nil)

// New returns a sink for cfg. It does no I/O; Start connects.
func New(cfg Config, log *zap.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	u, _ := url.Parse(cfg.URL) // validated above
	schema, table, _ := splitTable(cfg.Table)
	ident := pgx.Identifier{table}
	if schema != "" {
		ident = pgx.Identifier{schema, table}
	}
	s := &Sink{
		cfg:     cfg,
		log:     log,
		safeURL: safeURL(u),
		table:   ident.Sanitize(),
		index:   pgx.Identifier{table + "_port_seq"}.Sanitize(),
		method:  methodAuto,
	}
	s.insert, s.insertOne = insertUnnestSQL(s.table), insertValuesSQL(s.table, 1)
	return s, nil
}

// Start reads the connection settings (and the password variable), builds
// the connection pool and, if the server answers, creates the table. A
// server that does not answer is not an error: Start logs one warning and
// returns nil, writes fail retryably until the server answers, and the
// table is created on the first successful connection. Start fails only
// on a configuration error.
func (s *Sink) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("postgres sink: start after close")
	}
	if s.pool != nil {
		return nil
	}
	pc, err := pgxpool.ParseConfig(s.cfg.URL)
	if err != nil {
		return fmt.Errorf("postgres sink: url %s: %w", s.safeURL, err)
	}
	cc := pc.ConnConfig
	if s.cfg.PasswordEnv != "" {
		pw, ok := os.LookupEnv(s.cfg.PasswordEnv)
		if !ok {
			return fmt.Errorf("postgres sink: password_env: environment variable %s is not set", s.cfg.PasswordEnv)
		}
		cc.Password = pw
	}
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = s.cfg.ConnectTimeout
	}
	if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = DefaultApplicationName
	}
	p, err := newPool(pc, s.cfg.MaxConns)
	if err != nil {
		return fmt.Errorf("postgres sink: %w", err)
	}
	s.pool = p

	pctx, cancel := context.WithTimeout(ctx, cc.ConnectTimeout)
	defer cancel()
	c, err := s.acquire(pctx)
	if err != nil {
		s.log.Warn("PostgreSQL sink: server not reachable at start; starting anyway: writes fail and are retried (or spooled) until it answers, and the table is created then. "+
			"Check that the server runs and listens at the URL's host and port, and its pg_hba.conf, user, password and sslmode",
			zap.String("url", s.safeURL), zap.String("table", s.table), zap.Error(err))
		s.down.Store(true)
		return nil
	}
	s.pool.release(ctx, c)
	s.log.Debug("postgres sink started", zap.String("url", s.safeURL), zap.String("table", s.table), zap.Int("max_conns", s.cfg.MaxConns))
	return nil
}

// acquire takes a connection and makes sure the table exists.
func (s *Sink) acquire(ctx context.Context) (*conn, error) {
	c, err := s.pool.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres sink: %s: %w", s.safeURL, err)
	}
	if err := s.setup(ctx, c); err != nil {
		s.pool.release(ctx, c)
		return nil, err
	}
	if s.down.Load() && s.down.CompareAndSwap(true, false) {
		s.log.Info("PostgreSQL sink: server reachable", zap.String("url", s.safeURL), zap.String("table", s.table))
	}
	return c, nil
}

// setup creates the table and its index, once per sink (again after the
// server reported it missing).
func (s *Sink) setup(ctx context.Context, c *conn) error {
	if !s.cfg.CreateTable {
		return nil
	}
	s.setupMu.Lock()
	defer s.setupMu.Unlock()
	if s.ready {
		return nil
	}
	// One implicit transaction: both or neither.
	ddl := `CREATE TABLE IF NOT EXISTS ` + s.table + ` (
	id uuid PRIMARY KEY,
	port text NOT NULL,
	seq bigint NOT NULL,
	received_at timestamptz NOT NULL,
	received_ns bigint NOT NULL,
	payload bytea NOT NULL,
	fields jsonb
);
CREATE INDEX IF NOT EXISTS ` + s.index + ` ON ` + s.table + ` (port, seq)`
	if _, err := c.Exec(ctx, ddl); err != nil {
		return fmt.Errorf("postgres sink: create table %s: %w", s.table, err)
	}
	s.ready = true
	return nil
}

// tableMissing forgets that the table exists, so that the next write
// creates it again.
func (s *Sink) tableMissing() {
	s.setupMu.Lock()
	s.ready = false
	s.setupMu.Unlock()
}

// Write stores the batch. Frames already stored (same id) are skipped, so
// retrying a batch is safe. A frame the server rejects fails alone,
// permanently, in a *dispatch.BatchError while the rest of the batch is
// stored; any other failure fails the batch retryably.
func (s *Sink) Write(ctx context.Context, batch []*serialcb.Frame) error {
	if len(batch) == 0 {
		return nil
	}
	s.mu.Lock()
	p, closed := s.pool, s.closed
	s.mu.Unlock()
	if closed {
		return errors.New("postgres sink: write after close")
	}
	if p == nil {
		return errors.New("postgres sink: write before start")
	}

	// Frames PostgreSQL cannot represent are rejected before any statement.
	var errs []error
	frames, index := batch, []int(nil)
	for i, f := range batch {
		if err := checkFrame(f); err != nil {
			if errs == nil {
				errs = make([]error, len(batch))
			}
			errs[i] = dispatch.Permanent(err)
		}
	}
	if errs != nil {
		frames, index = make([]*serialcb.Frame, 0, len(batch)), make([]int, 0, len(batch))
		for i, f := range batch {
			if errs[i] == nil {
				frames = append(frames, f)
				index = append(index, i)
			}
		}
	}

	err := s.write(ctx, frames, func(i int, err error) {
		if errs == nil {
			errs = make([]error, len(batch))
		}
		errs[at(index, i)] = dispatch.Permanent(err)
	})
	if err != nil {
		if errs == nil {
			return err
		}
		// The frames not already failed permanently fail with err.
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
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

// write stores frames on one connection. A frame the server rejects is
// reported to reject (by its index in frames); the returned error is a
// batch-level failure.
func (s *Sink) write(ctx context.Context, frames []*serialcb.Frame, reject func(int, error)) error {
	if len(frames) == 0 {
		return nil
	}
	c, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer s.pool.release(ctx, c)
	if err := s.isolate(ctx, c, frames, 0, reject); err != nil {
		if isUndefinedTable(err) {
			s.tableMissing()
		}
		return fmt.Errorf("postgres sink: insert into %s: %w", s.table, err)
	}
	return nil
}

// isolate writes frames; when the server rejects the statement for its
// data, it bisects the frames to find the rows at fault, so that k bad rows
// in n cost O(k log n) statements and the good rows are stored.
func (s *Sink) isolate(ctx context.Context, c *conn, frames []*serialcb.Frame, off int, reject func(int, error)) error {
	err := s.exec(ctx, c, frames)
	if err == nil || !isDataError(err) {
		return err
	}
	if len(frames) == 1 {
		reject(off, fmt.Errorf("postgres sink: frame %s rejected: %w", frames[0].ID, err))
		return nil
	}
	half := len(frames) / 2
	if err := s.isolate(ctx, c, frames[:half], off, reject); err != nil {
		return err
	}
	return s.isolate(ctx, c, frames[half:], off+half, reject)
}

// checkFrame rejects what the table cannot hold, before any statement runs.
func checkFrame(f *serialcb.Frame) error {
	if f == nil {
		return errors.New("postgres sink: nil frame")
	}
	if f.Seq > math.MaxInt64 {
		return fmt.Errorf("postgres sink: frame %s: seq %d exceeds bigint", f.ID, f.Seq)
	}
	return nil
}

// isDataError reports an error caused by a row itself (SQLSTATE class 22,
// data exception, or 23, integrity constraint violation): retrying cannot
// help, but the other rows of the batch can still be stored.
func isDataError(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) != 5 {
		return false
	}
	class := pe.Code[:2]
	return class == "22" || class == "23"
}

func isUndefinedTable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "42P01"
}

// Close closes the connections. Call it once no Write is running. It is
// idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.pool != nil {
		s.pool.close()
	}
	return nil
}
