package node

import "github.com/custos-cctv/custos/node/join"

// The join room's names the node's integration tests use.
const (
	tokenPrefix      = join.TokenPrefix
	maxToken         = join.MaxToken
	joinFile         = join.InfoFile
	lastPeersFile    = join.LastPeersFile
	joinTimeout      = join.Timeout
	joinMaxConns     = join.MaxConns
	joinMaxPerSource = join.MaxPerSource
)

func readJoinInfo(dir string) (*join.Info, error) { return join.ReadInfo(dir) }
