// The Go baseline for bench/http_bench.sh: net/http answering "Hello, World!" on every
// path, on 127.0.0.1 and the port given (0: any). Prints "listening on HOST:PORT" and
// exits 0 on SIGTERM or SIGINT. Run with GOMAXPROCS=1 for one core.
//
// With --delay S (bench/url_fetcher_bench.sh's fast outside server) it answers GET /N
// with N*100 bytes after S seconds, as examples/url_fetcher's own pages do.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 0, "port to listen on (0: any)")
	delay := flag.Float64("delay", -1, "answer GET /N with N*100 bytes after this many seconds")
	flag.Parse()
	listener, err := net.Listen("tcp", fmt.Sprintf("%s:%d", *host, *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "go_hello:", err)
		os.Exit(1)
	}
	body := []byte("Hello, World!")
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})
	pages := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil || page < 0 || page > 100000 {
			http.Error(w, "no such page", http.StatusNotFound)
			return
		}
		time.Sleep(time.Duration(*delay * float64(time.Second)))
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(strings.Repeat("x", page*100)))
	})
	server := &http.Server{Handler: hello}
	if *delay >= 0 {
		server.Handler = pages
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		server.Shutdown(context.Background())
	}()
	fmt.Printf("listening on %s\n", listener.Addr())
	if err := server.Serve(listener); err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "go_hello:", err)
		os.Exit(1)
	}
}
