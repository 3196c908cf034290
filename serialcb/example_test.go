//go:build linux

package serialcb_test

import (
	"context"
	"fmt"

	"github.com/serialcbd/serialcbd/serialcb"
	"github.com/serialcbd/serialcbd/serialcb/vport"
)

// A device on a virtual port sends CRLF lines, a blank line and a line too
// long for the configured maximum; the Reader delivers the good frames in
// order and counts the oversize one.
func ExampleReader() {
	device, err := vport.Open()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer device.Close()
	// Small writes fit in the pty's buffer, so this does not wait for the reader.
	device.Write([]byte("$GPGGA,1*47\r\n\r\nTHIS LINE IS FAR TOO LONG\r\n$GPRMC,2*6A\r\n"))

	r, err := serialcb.NewReader(serialcb.PortConfig{
		Name:     "gps",
		Path:     device.Path(),
		Baud:     9600,
		MaxFrame: 16,
	}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	frames := make(chan serialcb.Frame, 2) // onFrame must not block: this one has room
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx, func(f serialcb.Frame) { frames <- f }) }()

	for range 2 {
		f := <-frames
		fmt.Printf("%s #%d %q\n", f.Port, f.Seq, f.Payload)
	}
	cancel()
	<-done
	fmt.Println("oversize:", r.Stats().Oversize)
	// Output:
	// gps #1 "$GPGGA,1*47"
	// gps #2 "$GPRMC,2*6A"
	// oversize: 1
}

// The Cutter on its own: frames come out whatever the read boundaries.
func ExampleCutter() {
	c := serialcb.NewCutter(serialcb.Lines(nil), 1024)
	for _, read := range []string{"temp=2", "1.5\r\nhum", "=40\n\npres"} {
		c.Feed([]byte(read), func(p []byte) { fmt.Printf("%q\n", p) }, nil)
	}
	fmt.Printf("pending %q\n", c.Pending())
	// Output:
	// "temp=21.5"
	// "hum=40"
	// pending "pres"
}
