module ballast.dev/helm-render

go 1.19
