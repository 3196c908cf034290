package serialcb

import "testing"

func TestDefaultName(t *testing.T) {
	tests := []struct{ path, want string }{
		{"/dev/ttyUSB0", "ttyUSB0"},
		{"/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A9XXXXXX-if00-port0", "usb-FTDI_FT232R_USB_UART_A9XXXXXX-if00-port0"},
		{"/dev/cu.usbserial-A1", "cu.usbserial-A1"},
		{"COM3", "COM3"},
		{`\\.\COM10`, "COM10"},
		{"//./COM10", "COM10"},
		{`C:\ports\link`, "link"},
		{"ttyS0", "ttyS0"},
	}
	for _, tt := range tests {
		if got := DefaultName(tt.path); got != tt.want {
			t.Errorf("DefaultName(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}
