// Package testdata embeds the recorded streams that `serialcbd demo` plays,
// so the demo runs from any directory. The go tool skips this folder in
// ./... patterns; it is built only when imported.
package testdata

import _ "embed"

// GPS is a 1 Hz NMEA 0183 session (GGA, GSA, GSV, RMC, VTG; CRLF line ends).
//
//go:embed demo/gps-nmea.log
var GPS []byte

// Sensor is a 10 Hz environment sensor printing CSV lines (LF line ends),
// after a '#' header line.
//
//go:embed demo/sensor-csv.log
var Sensor []byte
