module s3vfs.test/gosqlite

go 1.19

require github.com/mattn/go-sqlite3 v1.14.16

// Built offline against the source Debian ships (golang-github-mattn-go-sqlite3-dev), which
// links the system libsqlite3. Elsewhere, drop this line and `go get` the module instead.
replace github.com/mattn/go-sqlite3 => /usr/share/gocode/src/github.com/mattn/go-sqlite3
