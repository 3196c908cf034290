package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/serialcbd/serialcbd/serialcb/vport"
)

// WriterEnv, in a process's environment, makes it the device side of an
// open-loop run (see WriterMain) instead of what it would be.
const WriterEnv = "SERIALCBD_BENCH_WRITER"

// IsWriter reports whether this process was started as a bench writer; the
// program's main (and a test binary's TestMain) then calls WriterMain.
func IsWriter() bool { return os.Getenv(WriterEnv) != "" }

// writerJob is what the parent asks of a writer process.
type writerJob struct {
	Frames []int   `json:"frames"` // per port
	Size   int     `json:"size"`
	Batch  int     `json:"batch"`
	Rate   float64 `json:"rate"` // per port
	// Base is the parent's start, in ns of the monotonic clock Go's
	// time.Now reads, so that frame timestamps mean the same in both.
	Base int64 `json:"base"`
}

// WriterMain is the body of a writer process: it opens one virtual port
// per entry of the job in WriterEnv, prints their paths (one a line), waits
// for a line on stdin, writes the frames on the schedule, prints "sent N"
// and keeps the ports open until stdin ends. An open-loop run writes from a process of its own so that the CPU the
// run reports is the reader's alone: at device rates the writer's timers
// and writes cost as much as a plain reader.
func WriterMain() int {
	var job writerJob
	if err := json.Unmarshal([]byte(os.Getenv(WriterEnv)), &job); err != nil {
		fmt.Fprintln(os.Stderr, "bench writer:", err)
		return 2
	}
	pairs, err := openPairs(len(job.Frames))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench writer:", err)
		return 1
	}
	defer closePairs(pairs)
	out := bufio.NewWriter(os.Stdout)
	for _, p := range pairs {
		fmt.Fprintln(out, p.Path())
	}
	if err := out.Flush(); err != nil {
		return 1
	}
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		return 1
	}
	now, _ := monoNow()
	base := time.Now().Add(-time.Duration(now - job.Base))
	sent, err := writeEach(context.Background(), pairs, job.Frames, job.Size, job.Batch, job.Rate, base, nil)
	fmt.Fprintf(out, "sent %d\n", sent)
	_ = out.Flush()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench writer:", err)
		return 1
	}
	// The ports stay open until the parent has read them: closing the
	// master end would hang up the reader.
	_, _ = in.ReadString('\n')
	return 0
}

// devices is the device side of a run: ports to read and writers for them.
type devices interface {
	paths() []string
	// write writes every frame on the schedule; base is the run's start.
	write(ctx context.Context, base time.Time) (int, error)
	// unblock makes a pending write give up (the readers are gone).
	unblock()
	close()
	// writers is the CPU of writers in this process (nil: none measured);
	// external reports writers in a process of their own.
	writers() *writerCPU
	external() bool
}

// openDevices returns writers in a process of their own for an open-loop
// run, when this program can start itself, else in this process.
func openDevices(fl Options) (devices, error) {
	if fl.Rate > 0 {
		if exe, err := os.Executable(); err == nil {
			if d, err := startWriter(exe, fl); err == nil {
				return d, nil
			}
		}
	}
	pairs, err := openPairs(fl.Ports)
	if err != nil {
		return nil, err
	}
	return &inProcess{pairs: pairs, fl: fl}, nil
}

type inProcess struct {
	pairs []*vport.Pair
	fl    Options
	wcpu  *writerCPU // the writers' threads, in an open-loop run
}

func (d *inProcess) paths() []string {
	var ps []string
	for _, p := range d.pairs {
		ps = append(ps, p.Path())
	}
	return ps
}

func (d *inProcess) write(ctx context.Context, base time.Time) (int, error) {
	d.wcpu = newWriterCPU(d.fl)
	return writeAll(ctx, d.pairs, d.fl, base, d.wcpu)
}

func (d *inProcess) unblock()            { closePairs(d.pairs) }
func (d *inProcess) close()              { closePairs(d.pairs) }
func (d *inProcess) external() bool      { return false }
func (d *inProcess) writers() *writerCPU { return d.wcpu }

type child struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	ports []string
	base  int64
}

// startWriter starts exe as a writer process and reads its ports' paths.
func startWriter(exe string, fl Options) (*child, error) {
	job := writerJob{Size: fl.Size, Batch: fl.Batch, Rate: fl.Rate / float64(fl.Ports)}
	for i := range fl.Ports {
		job.Frames = append(job.Frames, share(fl.Frames, fl.Ports, i))
	}
	c := &child{}
	cmd := exec.Command(exe)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c.cmd, c.in, c.out = cmd, in, bufio.NewReader(out)
	base, ok := monoNow()
	if !ok {
		return nil, errors.New("bench writer: no monotonic clock to share")
	}
	c.base, job.Base = base, base
	j, err := json.Marshal(job)
	if err != nil {
		return nil, err
	}
	cmd.Env = append(os.Environ(), WriterEnv+"="+string(j))
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	for range fl.Ports {
		line, err := c.out.ReadString('\n')
		if err != nil {
			c.close()
			return nil, fmt.Errorf("bench writer: %w", err)
		}
		c.ports = append(c.ports, strings.TrimSpace(line))
	}
	return c, nil
}

func (c *child) paths() []string { return c.ports }

// write starts the writer; base must be the run's start, which for a child
// is fixed when it is started (see baseTime).
func (c *child) write(ctx context.Context, _ time.Time) (int, error) {
	if _, err := io.WriteString(c.in, "go\n"); err != nil {
		return 0, err
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			_ = c.cmd.Process.Kill()
		case <-done:
		}
	}()
	line, err := c.out.ReadString('\n')
	var n int
	if _, serr := fmt.Sscanf(line, "sent %d", &n); serr != nil && err == nil {
		err = fmt.Errorf("bench writer: unexpected %q", line)
	}
	return n, errors.Join(err, ctx.Err())
}

// baseTime is the run's start as the child computes it.
func (c *child) baseTime() time.Time {
	now, _ := monoNow()
	return time.Now().Add(-time.Duration(now - c.base))
}

func (c *child) unblock() { c.close() }

// close ends the writer: stdin closed, it exits; killed if it does not
// within a few seconds.
func (c *child) close() {
	_ = c.in.Close()
	if c.cmd == nil {
		return
	}
	t := time.AfterFunc(5*time.Second, func() { _ = c.cmd.Process.Kill() })
	_ = c.cmd.Wait()
	t.Stop()
	c.cmd = nil
}

func (c *child) external() bool      { return true }
func (c *child) writers() *writerCPU { return nil }
