package asyncloop_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/serialcbd/serialcbd/asyncloop"
)

func Example() {
	loop := asyncloop.New(asyncloop.Options{Workers: 4})
	loop.Start()
	defer loop.Shutdown(context.Background())

	// A synchronous producer (a serial read loop, say) hands a frame over
	// and goes straight back to reading.
	f := asyncloop.Submit(loop, func(ctx context.Context) (string, error) {
		return strings.ToUpper("frame 1"), nil // slow I/O would go here
	})

	// The done-callback runs on the loop goroutine: count, log, retry.
	logged := make(chan struct{})
	f.AddDoneCallback(func(f *asyncloop.Future[string]) {
		defer close(logged)
		if err := f.Err(); err != nil {
			fmt.Println("failed:", err)
			return
		}
		fmt.Println("delivered")
	})
	<-logged

	// Any other goroutine can wait for the outcome.
	v, err := f.Result(context.Background())
	fmt.Println(v, err)
	// Output:
	// delivered
	// FRAME 1 <nil>
}
