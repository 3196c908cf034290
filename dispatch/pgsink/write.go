package pgsink

import (
	"context"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/serialcbd/serialcbd/serialcb"
)

// method is a way of writing a batch. The sink uses methodAuto; the others
// are kept for BenchmarkMethod, which chose it. Median of 5 interleaved
// rounds (-test.benchtime 0.5s), frames/s, 2-core machine, PostgreSQL 15 on
// loopback, 64-byte frames, one Write at a time, synchronous_commit=off
// (every method commits once per batch; the WAL flush costs them alike and
// is the noisiest part on a shared disk):
//
//	frames/batch      1       10      100     1000
//	unnest        13.9k    88.9k     206k     262k
//	values        16.3k    92.7k     183k     189k
//	batch         15.8k    75.3k     131k     140k
//	copy           1.7k    16.3k     100k     213k
//	auto          15.0k    84.7k     203k     263k   (values for 1, else unnest)
//
// unnest (one statement for any size, arrays in binary format, one round
// trip, one prepared statement) leads from 100 frames on and is level with
// values at 10; a single frame is cheaper as a plain one-row VALUES (no
// array encoding, no unnest). Multi-row VALUES needs a prepared statement
// per batch size and falls behind at large batches; pipelined one-row
// INSERTs (pgx.Batch) pay per-statement overhead; COPY needs a transaction
// and a second statement, which costs at small batches.
//
// With the server's default synchronous_commit=on (BenchmarkWrite, same
// rounds) the sink writes 5.8k frames/s in batches of 1 (a WAL flush per
// batch), 163k in batches of 100 and 251k in batches of 1,000.
type method int

const (
	methodAuto   method = iota // methodValues for one frame, else methodUnnest
	methodUnnest               // INSERT … SELECT FROM unnest($1::uuid[], …)
	methodCopy                 // COPY into a temporary table, INSERT … SELECT
	methodValues               // INSERT … VALUES (…), (…) with parameters
	methodBatch                // one INSERT per row, pipelined (pgx.Batch)
)

func (m method) String() string {
	return [...]string{"auto", "unnest", "copy", "values", "batch"}[m]
}

// columns of the table, in order.
var columns = []string{"id", "port", "seq", "received_at", "received_ns", "payload", "fields"}

const columnList = "(id, port, seq, received_at, received_ns, payload, fields)"

func insertUnnestSQL(table string) string {
	return "INSERT INTO " + table + " " + columnList +
		" SELECT * FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::timestamptz[], $5::int8[], $6::bytea[], $7::jsonb[])" +
		" ON CONFLICT (id) DO NOTHING"
}

func insertValuesSQL(table string, rows int) string {
	var b strings.Builder
	b.WriteString("INSERT INTO " + table + " " + columnList + " VALUES ")
	for i := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		n := i * len(columns)
		b.WriteByte('(')
		for j := range columns {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n + j + 1))
		}
		b.WriteByte(')')
	}
	b.WriteString(" ON CONFLICT (id) DO NOTHING")
	return b.String()
}

// maxValuesRows keeps a multi-row VALUES statement under PostgreSQL's
// 65,535 parameters.
const maxValuesRows = 1000

// stagingTable is the per-connection temporary table of methodCopy.
const stagingTable = "serialcbd_stage"

// exec writes frames in one statement (methodUnnest) or transaction.
func (s *Sink) exec(ctx context.Context, c *conn, frames []*serialcb.Frame) error {
	switch s.method {
	case methodCopy:
		return s.execCopy(ctx, c, frames)
	case methodValues:
		return s.execValues(ctx, c, frames)
	case methodBatch:
		return s.execBatch(ctx, c, frames)
	case methodAuto:
		if len(frames) == 1 {
			_, err := c.Exec(ctx, s.insertOne, row(frames[0])...)
			return err
		}
	}
	return s.execUnnest(ctx, c, frames)
}

func (s *Sink) execUnnest(ctx context.Context, c *conn, frames []*serialcb.Frame) error {
	n := len(frames)
	ids := make([]pgtype.UUID, n)
	ports := make([]string, n)
	seqs := make([]int64, n)
	ats := make([]pgtype.Timestamptz, n)
	nss := make([]int64, n)
	payloads := make([][]byte, n)
	fields := make([][]byte, n)
	for i, f := range frames {
		ids[i] = pgtype.UUID{Bytes: f.ID, Valid: true}
		ports[i] = f.Port
		seqs[i] = int64(f.Seq)
		ats[i] = pgtype.Timestamptz{Time: f.ReceivedAt, Valid: true}
		nss[i] = f.ReceivedAt.UnixNano()
		payloads[i] = payload(f)
		fields[i] = fieldsOf(f)
	}
	_, err := c.Exec(ctx, s.insert, ids, ports, seqs, ats, nss, payloads, fields)
	return err
}

// payload is never NULL: an empty frame is an empty bytea.
func payload(f *serialcb.Frame) []byte {
	if f.Payload == nil {
		return []byte{}
	}
	return f.Payload
}

// fieldsOf is NULL (a nil slice) when the frame has no fields.
func fieldsOf(f *serialcb.Frame) []byte {
	if len(f.Fields) == 0 {
		return nil
	}
	return f.Fields
}

func row(f *serialcb.Frame) []any {
	return []any{
		pgtype.UUID{Bytes: f.ID, Valid: true}, f.Port, int64(f.Seq),
		pgtype.Timestamptz{Time: f.ReceivedAt, Valid: true}, f.ReceivedAt.UnixNano(),
		payload(f), fieldsOf(f),
	}
}

func (s *Sink) execCopy(ctx context.Context, c *conn, frames []*serialcb.Frame) error {
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(ctx) }() // a no-op after Commit
	if !c.staged {
		if _, err := tx.Exec(ctx, "CREATE TEMPORARY TABLE IF NOT EXISTS "+stagingTable+
			" (LIKE "+s.table+" INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"); err != nil {
			return err
		}
	}
	_, err = tx.CopyFrom(ctx, pgx.Identifier{stagingTable}, columns, pgx.CopyFromSlice(len(frames), func(i int) ([]any, error) {
		return row(frames[i]), nil
	}))
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+s.table+" "+columnList+" SELECT "+strings.Join(columns, ", ")+
		" FROM "+stagingTable+" ON CONFLICT (id) DO NOTHING"); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	c.staged = true
	return nil
}

func (s *Sink) execValues(ctx context.Context, c *conn, frames []*serialcb.Frame) error {
	for off := 0; off < len(frames); off += maxValuesRows {
		chunk := frames[off:min(off+maxValuesRows, len(frames))]
		args := make([]any, 0, len(chunk)*len(columns))
		for _, f := range chunk {
			args = append(args, row(f)...)
		}
		if _, err := c.Exec(ctx, insertValuesSQL(s.table, len(chunk)), args...); err != nil {
			return err
		}
	}
	return nil
}

func (s *Sink) execBatch(ctx context.Context, c *conn, frames []*serialcb.Frame) error {
	q := insertValuesSQL(s.table, 1)
	b := &pgx.Batch{}
	for _, f := range frames {
		b.Queue(q, row(f)...)
	}
	return c.SendBatch(ctx, b).Close()
}
