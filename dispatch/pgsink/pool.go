package pgsink

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pool is the sink's pgxpool with what the sink keeps per connection. The
// pool bounds the connections (max_conns), reuses the warmest, drops the
// broken ones, checks idle ones in the background (pgxpool's health check,
// every minute) and replaces each after its lifetime (pgxpool's defaults:
// an hour, or 30 minutes idle).
type pool struct {
	*pgxpool.Pool
	// pingAfter is defaultPingAfter but in tests.
	pingAfter time.Duration
	// broken is when a connection was last found dead (UnixNano): the idle
	// ones likely died with it, so each is pinged before reuse.
	broken atomic.Int64
	state  sync.Map // *pgx.Conn → *connState
}

// connState is what the sink set up on a connection.
type connState struct {
	staged bool // the COPY staging table exists (methodCopy)
}

// conn is an acquired connection and its state. Release it with
// pool.release.
type conn struct {
	*pgxpool.Conn
	*connState
}

// defaultPingAfter is how long a connection may sit idle before acquire pings it,
// so that one the server closed meanwhile (a restart, an administrator's
// pg_terminate_backend, an idle timeout, a NAT that forgot it) is replaced
// rather than failing a write. pgxpool's own default is the same.
const defaultPingAfter = time.Second

// newPool builds the pool without connecting; cfg comes from
// pgxpool.ParseConfig.
func newPool(cfg *pgxpool.Config, size int) (*pool, error) {
	p := &pool{pingAfter: defaultPingAfter}
	cfg.MaxConns = int32(size)
	cfg.MinConns = 0
	cfg.ShouldPing = p.shouldPing
	cfg.BeforeClose = func(c *pgx.Conn) { p.state.Delete(c) }
	pp, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, err
	}
	p.Pool = pp
	return p, nil
}

func (p *pool) shouldPing(_ context.Context, sp pgxpool.ShouldPingParams) bool {
	return sp.IdleDuration >= p.pingAfter || time.Now().Add(-sp.IdleDuration).UnixNano() <= p.broken.Load()
}

// acquire returns an idle connection or opens one. It waits for a free
// place while size connections are in use, until ctx ends.
func (p *pool) acquire(ctx context.Context) (*conn, error) {
	c, err := p.Acquire(ctx)
	if err != nil {
		if st := p.Stat(); ctx.Err() != nil && st.AcquiredConns() >= st.MaxConns() {
			return nil, fmt.Errorf("wait for one of %d connections (max_conns) in use: %w", st.MaxConns(), context.Cause(ctx))
		}
		return nil, fmt.Errorf("connect: %w", err)
	}
	st, _ := p.state.LoadOrStore(c.Conn(), &connState{})
	return &conn{Conn: c, connState: st.(*connState)}, nil
}

// release gives c back; pgxpool closes it instead when it is broken or
// inside a transaction (a write interrupted by its context).
func (p *pool) release(_ context.Context, c *conn) {
	if c.Conn.Conn().IsClosed() {
		// The connection died (a server restart, a network cut): ping the
		// idle ones before reuse, so that the next writes do not fail on
		// them one by one.
		p.broken.Store(time.Now().UnixNano())
	}
	c.Release()
}

// close closes the pool; call it once no write is running.
func (p *pool) close() { p.Close() }
