module jsonmeta

go 1.19
