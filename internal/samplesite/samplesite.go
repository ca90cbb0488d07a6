// Package samplesite is a small website with the Cache-Control headers
// real sites send, for `geocdn dev` to pull through: pages that are fresh
// for a minute, a news page served stale while it revalidates, immutable
// assets, a heuristically cacheable file, pages that must not be stored
// (private, no-store, setting a cookie), a redirect, a cacheable 404, a
// page that varies by language, tagged pages for purges by tag, and an
// echo endpoint for the methods no cache answers.
//
// Every page lives under /site/, so that it sits beside the published
// sample content of the same namespace; the index lists them.
package samplesite

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Page is one page of the site, for the index and the dev banner.
type Page struct {
	Path, What string
}

// Pages lists the site's pages.
var Pages = []Page{
	{"/site/", "the index: public, max-age=60, with an ETag"},
	{"/site/news", "max-age=10, stale-while-revalidate=30, stale-if-error=300; changes every 10 s"},
	{"/site/static/app.css", "max-age=31536000, immutable"},
	{"/site/about.txt", "no Cache-Control: heuristically fresh for 10% of its Last-Modified age"},
	{"/site/account", "private: passed through, never stored"},
	{"/site/now", "no-store: the upstream's clock, passed through every time"},
	{"/site/login", "sets a cookie: passed through, never stored"},
	{"/site/old-page", "301 to /site/, cacheable"},
	{"/site/missing", "404 with max-age=30: a cacheable not-found"},
	{"/site/hello", "Vary: Accept-Language (en, fr, de)"},
	{"/site/tagged/a", "Surrogate-Key: tagged (purge them by tag)"},
	{"/site/api/echo", "any method but GET: echoed, never cached"},
}

// Handler returns the site. start is when its pages were last modified.
func Handler(start time.Time) http.Handler {
	var hits atomic.Int64
	mux := http.NewServeMux()
	mod := start.UTC().Add(-30 * 24 * time.Hour)
	page := func(w http.ResponseWriter, title, body string) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>%s</title><h1>%s</h1>%s\n", html.EscapeString(title), html.EscapeString(title), body)
	}
	mux.HandleFunc("GET /site/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("ETag", `"index-1"`)
		if r.Header.Get("If-None-Match") == `"index-1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		var b strings.Builder
		b.WriteString("<ul>")
		for _, p := range Pages {
			fmt.Fprintf(&b, "<li><a href=%q>%s</a>: %s</li>", p.Path, p.Path, html.EscapeString(p.What))
		}
		b.WriteString("</ul>")
		page(w, "geocdn sample site", b.String())
	})
	mux.HandleFunc("GET /site/news", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=30, stale-if-error=300")
		w.Header().Set("Surrogate-Key", "news")
		edition := time.Now().Unix() / 10
		page(w, "News", fmt.Sprintf("<p>edition %d (upstream request %d)</p>", edition, hits.Add(1)))
	})
	mux.HandleFunc("GET /site/static/app.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=31536000, immutable")
		w.Header().Set("Content-Type", "text/css")
		io.WriteString(w, "body { font-family: sans-serif; margin: 2em; }\n")
	})
	mux.HandleFunc("GET /site/about.txt", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Last-Modified", mod.Format(http.TimeFormat))
		io.WriteString(w, "A sample site behind geocdn. Fresh for three days by heuristic: it changed 30 days ago.\n")
	})
	mux.HandleFunc("GET /site/account", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, max-age=60")
		page(w, "Your account", "<p>for one client only</p>")
	})
	mux.HandleFunc("GET /site/now", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, time.Now().UTC().Format(time.RFC3339Nano))
	})
	mux.HandleFunc("GET /site/login", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		http.SetCookie(w, &http.Cookie{Name: "session", Value: fmt.Sprint(hits.Add(1)), Path: "/site/", HttpOnly: true})
		page(w, "Logged in", "<p>a cookie was set</p>")
	})
	mux.HandleFunc("GET /site/old-page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		http.Redirect(w, r, "/site/", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /site/hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=300")
		w.Header().Set("Vary", "Accept-Language")
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		switch lang := r.Header.Get("Accept-Language"); {
		case strings.HasPrefix(lang, "fr"):
			io.WriteString(w, "Bonjour\n")
		case strings.HasPrefix(lang, "de"):
			io.WriteString(w, "Hallo\n")
		default:
			io.WriteString(w, "Hello\n")
		}
	})
	mux.HandleFunc("GET /site/tagged/{name}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Surrogate-Key", "tagged")
		page(w, "Tagged "+r.PathValue("name"), fmt.Sprintf("<p>fetched at upstream request %d</p>", hits.Add(1)))
	})
	mux.HandleFunc("/site/api/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "%s %s\n%s\n", r.Method, r.URL.RequestURI(), b)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=30")
		http.Error(w, "no such page on the sample site; see /site/", http.StatusNotFound)
	})
	return mux
}
