// A Go stdlib client for the egress-proxy tests: one request through the proxy
// with net/http (Proxy: http.ProxyURL, ForceAttemptHTTP2), trusting only the CA
// file given. Prints a JSON object: status, proto, decision, body.
// Usage: client PROXY_URL CA_FILE METHOD URL
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: client PROXY_URL CA_FILE METHOD URL")
		os.Exit(2)
	}
	proxyURL, err := url.Parse(os.Args[1])
	if err != nil {
		fail(err)
	}
	pem, err := os.ReadFile(os.Args[2])
	if err != nil {
		fail(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		fail(fmt.Errorf("no certificate in %s", os.Args[2]))
	}
	tr := &http.Transport{
		Proxy:             http.ProxyURL(proxyURL),
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: true,
	}
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	req, err := http.NewRequest(os.Args[3], os.Args[4], nil)
	if err != nil {
		fail(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		fail(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		fail(err)
	}
	out, _ := json.Marshal(map[string]interface{}{
		"status":   resp.StatusCode,
		"proto":    resp.Proto,
		"decision": resp.Header.Get("X-Egress-Proxy-Decision"),
		"body":     string(body),
	})
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "go client:", err)
	os.Exit(1)
}
