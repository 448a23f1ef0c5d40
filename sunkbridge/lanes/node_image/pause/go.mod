module sunkbridge.local/pause

go 1.22
