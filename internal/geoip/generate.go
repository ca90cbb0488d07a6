package geoip

// The test database is generated, never edited by hand; TestReproducible in
// ./gen checks the committed file against the program.
//go:generate go run ./gen -o ../../testdata/geoip-test.mmdb

// The country points are generated from GeoNames; see ./countrygen.
//go:generate go run ./countrygen -o countries_gen.go
