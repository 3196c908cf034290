package decode_test

import (
	"errors"
	"fmt"

	"github.com/serialcbd/serialcbd/serialcb/decode"
)

func Example() {
	d, err := decode.Parse("csv:ms,temp_c,rh_pct;numbers")
	if err != nil {
		panic(err)
	}
	fields, err := d.Append(nil, []byte("100,21.43,44.0\r"))
	fmt.Println(string(fields), err)

	_, err = d.Append(nil, []byte("# header"))
	fmt.Println(errors.Is(err, decode.ErrMismatch), err)
	// Output:
	// {"ms":100,"temp_c":21.43,"rh_pct":44.0} <nil>
	// true decode csv: fewer columns than names
}
