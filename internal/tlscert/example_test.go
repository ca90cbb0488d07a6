package tlscert_test

import (
	"context"
	"crypto/tls"
	"log"
	"net/http"
	"time"

	"github.com/geocdn/geocdn/internal/tlscert"
)

// One Store serves every client-facing listener; an HTTP/3 server takes the
// same tls.Config. The first pair is the default certificate.
func ExampleStore() {
	store, err := tlscert.Load([]tlscert.Pair{
		{CertFile: "/etc/geocdn/tls/default.crt", KeyFile: "/etc/geocdn/tls/default.key"},
		{CertFile: "/etc/geocdn/tls/wildcard.example.com.crt", KeyFile: "/etc/geocdn/tls/wildcard.example.com.key"},
	}, tlscert.Options{})
	if err != nil {
		log.Fatal(err) // names the file and what is wrong with it
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go store.Watch(ctx, time.Minute)

	srv := &http.Server{
		Addr:      ":443",
		TLSConfig: &tls.Config{GetCertificate: store.GetCertificate},
	}
	log.Fatal(srv.ListenAndServeTLS("", ""))
}
