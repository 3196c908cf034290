package serialcb

// FramingHelp documents every framing spec ParseFraming accepts, for help
// texts and the tests that keep them complete.
const FramingHelp = framingHelp
