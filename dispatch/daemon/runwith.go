package daemon

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/serialcbd/serialcbd/serialcb"
)

// RunWith is Run's start and stop sequence with the caller's frame
// callback and workload: start the loop and the dispatcher, open every
// port, run work, then stop reading, drain and shut down.
func (d *Daemon) RunWith(ctx context.Context, onFrame func(serialcb.Frame), work func(context.Context) error) (err error) {
	d.loop.Start()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = d.loop.Shutdown(sctx)
		err = errors.Join(err, d.disp.Close())
	}()
	if err := d.disp.Start(ctx); err != nil {
		return err
	}
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	var wg sync.WaitGroup
	errs := make(chan error, len(d.readers))
	for i, r := range d.readers {
		wg.Go(func() { errs <- r.RunOpen(readCtx, onFrame) })
		select {
		case <-r.Opened():
		case err := <-errs:
			stopReading()
			wg.Wait()
			return fmt.Errorf("port %s: %w", d.ports[i].Name, err)
		case <-ctx.Done():
			stopReading()
			wg.Wait()
			return ctx.Err()
		}
	}
	workErr := work(ctx)
	stopReading()
	wg.Wait()
	dctx, cancel := context.WithTimeout(context.Background(), d.drainTimeout)
	defer cancel()
	return errors.Join(workErr, d.disp.Drain(dctx))
}
