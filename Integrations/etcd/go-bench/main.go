// go-bench: etcd's own Go client (clientv3) driving the same closed-loop put/get load as a
// `target: etcd` workload, to check that csmr's Swift gRPC client does not handicap etcd.
// Same shape as csmr-etcd: one clientv3.Client (one gRPC connection) per clients-per-conn
// clients, connections round robin over the endpoints, linearizable Range for get.
//
// Build (Debian golang-go and golang-etcd-server-dev, no network): see build.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated host:port client URLs")
	clients := flag.Int("clients", 64, "closed-loop clients")
	perConn := flag.Int("clients-per-conn", 16, "clients sharing one connection")
	duration := flag.Duration("duration", 10*time.Second, "measured window")
	warmup := flag.Duration("warmup", 2*time.Second, "unmeasured start")
	putShare := flag.Float64("put", 0.5, "share of puts; the rest are linearizable gets")
	keys := flag.Int("keys", 1000, "distinct keys, chosen uniformly")
	valueSize := flag.Int("value-size", 100, "bytes per value")
	flag.Parse()

	eps := strings.Split(*endpoints, ",")
	conns := (*clients + *perConn - 1) / *perConn
	kvs := make([]*clientv3.Client, conns)
	for i := range kvs {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{eps[i%len(eps)]}, DialTimeout: 10 * time.Second})
		if err != nil {
			fmt.Fprintln(os.Stderr, "go-bench: connect:", err)
			os.Exit(1)
		}
		defer c.Close()
		kvs[i] = c
	}
	value := strings.Repeat("v", *valueSize)
	start := time.Now()
	measureFrom := start.Add(*warmup)
	measureTo := measureFrom.Add(*duration)
	var completed, failed int64
	latencies := make([][]time.Duration, *clients)
	var wg sync.WaitGroup
	for i := 0; i < *clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// Client i shares connection i % conns, as csmr-etcd maps session ids to channels.
			kv := kvs[i%conns]
			random := rand.New(rand.NewSource(int64(i) + 1))
			for {
				now := time.Now()
				if now.After(measureTo) {
					return
				}
				key := fmt.Sprintf("key-%d", random.Intn(*keys))
				var err error
				if random.Float64() < *putShare {
					_, err = kv.Put(context.Background(), key, value)
				} else {
					_, err = kv.Get(context.Background(), key)
				}
				done := time.Now()
				if now.After(measureFrom) && !done.After(measureTo) {
					if err != nil {
						atomic.AddInt64(&failed, 1)
					} else {
						atomic.AddInt64(&completed, 1)
						latencies[i] = append(latencies[i], done.Sub(now))
					}
				}
			}
		}(i)
	}
	wg.Wait()
	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	pct := func(p float64) int64 {
		if len(all) == 0 {
			return 0
		}
		return all[int(p*float64(len(all)-1))].Microseconds()
	}
	fmt.Printf("clients,conns,ops_s,errors,p50_us,p99_us,p999_us,max_us\n%d,%d,%.1f,%d,%d,%d,%d,%d\n",
		*clients, conns, float64(completed)/duration.Seconds(), failed, pct(0.50), pct(0.99), pct(0.999), pct(1))
}
