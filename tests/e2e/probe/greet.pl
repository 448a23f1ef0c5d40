#!/usr/bin/perl
# Answer every TCP connection on the given port with one line naming this host.
use strict;
use warnings;
use IO::Socket::INET;

my $port = shift // 7000;
open(my $fh, "<", "/etc/hostname") or die "cannot read /etc/hostname: $!";
chomp(my $name = <$fh>);
my $server = IO::Socket::INET->new(LocalPort => $port, Listen => 16, ReuseAddr => 1)
  or die "cannot listen on $port: $!";
while (my $client = $server->accept) {
  print $client "hello from $name\n";
  close $client;
}
