package serialcb

import (
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// pathWatch wakes a reopen wait when something appears where the port's
// path is (a USB device node in /dev, a udev link in /dev/serial/by-id, a
// socat link), so a replugged device is read again at once rather than at
// the next retry. It watches the nearest directory of the path that exists
// now. Events are hints: the reader just tries to open again.
type pathWatch struct {
	f    *os.File
	wake chan struct{}
	done chan struct{}
}

// watchPath starts a watch; nil when the kernel refuses one (the retry
// timer still reopens the port).
func watchPath(path string) *pathWatch {
	dir, ok := nearestDir(path)
	if !ok {
		return nil
	}
	return watchDir(path, dir)
}

// nearestDir is the deepest directory on path's way that exists now.
func nearestDir(path string) (string, bool) {
	dir := filepath.Dir(path)
	for {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// watchDir watches dir, chosen as path's nearest directory. If a deeper one
// appeared meanwhile (udev makes /dev/serial/by-id and its link moments
// apart), the watch is on the wrong directory and would miss the link: it
// wakes at once, so that the caller tries again and watches anew.
func watchDir(path, dir string) *pathWatch {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_ATTRIB); err != nil {
		unix.Close(fd)
		return nil
	}
	// A non-blocking descriptor goes to Go's poller: Close wakes the Read.
	w := &pathWatch{f: os.NewFile(uintptr(fd), "inotify"), wake: make(chan struct{}, 1), done: make(chan struct{})}
	if now, ok := nearestDir(path); ok && now != dir {
		w.wake <- struct{}{}
	}
	go w.run()
	return w
}

func (w *pathWatch) run() {
	defer close(w.done)
	buf := make([]byte, 4096)
	for {
		if _, err := w.f.Read(buf); err != nil {
			return // closed
		}
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// C receives a value after a change in the watched directory.
func (w *pathWatch) C() <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.wake
}

// Close stops the watch and waits for its goroutine.
func (w *pathWatch) Close() {
	if w == nil {
		return
	}
	w.f.Close()
	<-w.done
}
