package pgsink

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// pool is a bounded set of connections. pgxpool would do, but it needs
// github.com/jackc/puddle/v2, which the module does not require; the sink
// needs little: a bound, reuse, and dropping broken connections.
type pool struct {
	cfg *pgx.ConnConfig
	sem chan struct{} // a token per connection handed out or being opened
	// pingAfter is defaultPingAfter but in tests.
	pingAfter time.Duration

	mu     sync.Mutex // guards idle and closed
	idle   []*conn    // LIFO: the warmest connection first
	closed bool
}

// conn is a pooled connection and what the sink set up on it.
type conn struct {
	*pgx.Conn
	idleSince time.Time
	staged    bool // the COPY staging table exists (methodCopy)
}

// errPoolClosed fails an acquire after Close.
var errPoolClosed = errors.New("postgres sink closed")

// defaultPingAfter is how long a connection may sit idle before acquire pings it,
// so that one the server closed meanwhile (a restart, an administrator's
// pg_terminate_backend, an idle timeout, a NAT that forgot it) is replaced
// rather than failing a write. pgxpool does the same after 1s.
const defaultPingAfter = time.Second

func newPool(cfg *pgx.ConnConfig, size int) *pool {
	return &pool{cfg: cfg, sem: make(chan struct{}, size), pingAfter: defaultPingAfter}
}

// acquire returns an idle connection or opens one. It waits for a free
// place while size connections are in use, until ctx ends.
func (p *pool) acquire(ctx context.Context) (*conn, error) {
	select {
	case p.sem <- struct{}{}:
	default:
		select {
		case p.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for one of %d connections (max_conns) in use: %w", cap(p.sem), context.Cause(ctx))
		}
	}
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			<-p.sem
			return nil, errPoolClosed
		}
		var c *conn
		if n := len(p.idle); n > 0 {
			c = p.idle[n-1]
			p.idle[n-1] = nil
			p.idle = p.idle[:n-1]
		}
		p.mu.Unlock()
		if c == nil {
			break
		}
		if time.Since(c.idleSince) < p.pingAfter || c.Ping(ctx) == nil {
			return c, nil
		}
		closeConn(ctx, c)
	}
	pc, err := pgx.ConnectConfig(ctx, p.cfg)
	if err != nil {
		<-p.sem
		return nil, fmt.Errorf("connect: %w", err)
	}
	return &conn{Conn: pc}, nil
}

// release gives c back, or closes it when it is broken, inside a
// transaction (a write interrupted by its context), or the pool is closed.
func (p *pool) release(ctx context.Context, c *conn) {
	defer func() { <-p.sem }()
	if c.IsClosed() {
		// The connection died (a server restart, a network cut): the idle
		// ones likely died with it, however fresh. Ping each before reuse,
		// so that the next writes do not fail on them one by one.
		p.mu.Lock()
		for _, ic := range p.idle {
			ic.idleSince = time.Time{}
		}
		p.mu.Unlock()
		closeConn(ctx, c)
		return
	}
	if c.PgConn().IsBusy() || c.PgConn().TxStatus() != 'I' {
		closeConn(ctx, c)
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		closeConn(ctx, c)
		return
	}
	c.idleSince = time.Now()
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// close closes the idle connections; those in use are closed when
// released.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	// Close has no context of its own: give each goodbye a second.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, c := range idle {
		closeConn(ctx, c)
	}
}

// closeConn closes c, politely when ctx allows it. The error does not
// matter: the connection is dropped either way.
func closeConn(ctx context.Context, c *conn) {
	if ctx.Err() != nil {
		// A cancelled context would make Close skip the goodbye and take
		// as long; a short fresh one lets the server end the backend.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 100*time.Millisecond)
		defer cancel()
	}
	_ = c.Close(ctx)
}
