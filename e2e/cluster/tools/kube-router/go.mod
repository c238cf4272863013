module verity.local/e2e/cluster/tools/kube-router

go 1.26.8

require github.com/cloudnativelabs/kube-router/v2 v2.1.0 // indirect
