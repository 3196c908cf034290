//go:build !unix

package serialcb

// permissionHint: on Windows a refused open is mostly a port another
// program has open.
func permissionHint(path string) string {
	return "another program may have " + path + " open (Windows opens a COM port for one program at a time): close it, or check the port's permissions"
}
