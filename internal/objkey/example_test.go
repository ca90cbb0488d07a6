package objkey_test

import (
	"errors"
	"fmt"

	"github.com/geocdn/geocdn/internal/objkey"
)

func ExampleFromPath() {
	for _, p := range []string{"/img/logo.png", "/docs/read%20me.txt", "/a%2Fb", "/a/../b", "/img/"} {
		key, err := objkey.FromPath(p, "/")
		if errors.Is(err, objkey.ErrInvalidKey) {
			fmt.Printf("%-22s 400 %v\n", p, err)
			continue
		}
		fmt.Printf("%-22s key %q\n", p, key)
	}
	// Output:
	// /img/logo.png          key "img/logo.png"
	// /docs/read%20me.txt    key "docs/read me.txt"
	// /a%2Fb                 key "a/b"
	// /a/../b                400 invalid key: ".." segment at byte 2
	// /img/                  400 invalid key: empty path segment at byte 4
}
