#!/usr/bin/perl
# Verifies the DKIM signature of the message on standard input with
# Mail::DKIM (Debian libmail-dkim-perl), an implementation independent of
# mxg's dkimpy, and prints its result: pass, fail, invalid, none.
#
#   dkim_verify.pl --key 'v=DKIM1; k=rsa; p=...'      the key given
#   dkim_verify.pl --dns 127.0.0.1 --port 5353       the key from DNS
use strict;
use warnings;
use Getopt::Long;
use Mail::DKIM::Verifier;

my ($key, $dns, $port) = (undef, undef, 53);
GetOptions('key=s' => \$key, 'dns=s' => \$dns, 'port=i' => \$port) or exit 2;

if (defined $key) {
    # Answer every key query with the given record.
    no warnings 'redefine';
    *Mail::DKIM::PublicKey::fetch = sub {
        my ($class, %args) = @_;
        return Mail::DKIM::PublicKey->parse($key);
    };
    *Mail::DKIM::PublicKey::fetch_async = sub {
        my ($class, %args) = @_;
        my $pk = Mail::DKIM::PublicKey->parse($key);
        my $done = $args{Callbacks}{Success};
        return sub { $done->($pk) };
    };
} elsif (defined $dns) {
    require Net::DNS::Resolver;
    Mail::DKIM::DNS::resolver(
        Net::DNS::Resolver->new(nameservers => [$dns], port => $port, recurse => 1)
    );
}

my $dkim = Mail::DKIM::Verifier->new();
binmode STDIN;
while (my $line = <STDIN>) {
    $line =~ s/\r?\n\z/\r\n/;
    $dkim->PRINT($line);
}
$dkim->CLOSE;
print $dkim->result, "\n";
print STDERR $dkim->result_detail, "\n";
